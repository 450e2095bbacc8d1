// Package main is the example container of examples/web-container: a static
// HTTP server that answers every request with "hello from <allocation>",
// the allocation's name coming from HERD_ALLOC_NAME.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	name := os.Getenv("HERD_ALLOC_NAME")
	if name == "" {
		name = "an unknown allocation"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", name)
	})
	log.Printf("%s listening on :8080", name)
	log.Fatal(http.ListenAndServe(":8080", nil))
}
