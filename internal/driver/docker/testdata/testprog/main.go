// Package main is the program inside the docker driver's test image:
// modes "sleep" (exits 3 on SIGTERM), "ignore-term", "echo X...",
// "exit N", "alloc N" (MiB, to be OOM killed), "serve PORT" and "get URL"
// (retries until it answers, prints the body). With HERD_PAUSE=1 it is the
// pause process.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herd-project/herd/internal/driver/docker"
)

func main() {
	docker.RunPauseIfRequested()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testprog MODE ...")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "sleep":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		fmt.Println("sleeping")
		<-sigs
		os.Exit(3)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		for {
			time.Sleep(time.Hour)
		}
	case "echo":
		fmt.Println(strings.Join(args, " "))
		fmt.Fprintln(os.Stderr, "stderr:", strings.Join(args, " "))
	case "exit":
		n, _ := strconv.Atoi(args[0])
		os.Exit(n)
	case "alloc":
		// Memory outside the Go heap: the kernel's OOM killer must end the
		// program, not the runtime failing to grow its heap or to start a
		// GC thread near the limit (which exits 2 and is no OOM kill).
		n, _ := strconv.Atoi(args[0])
		mem, err := syscall.Mmap(-1, 0, n<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mmap:", err)
			os.Exit(1)
		}
		for j := 0; j < len(mem); j += 4096 {
			mem[j] = 1
		}
		fmt.Println("allocated", n)
	case "serve":
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello") })
		fmt.Println(http.ListenAndServe(":"+args[0], nil))
		os.Exit(1)
	case "get":
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			resp, err := http.Get(args[0])
			if err != nil {
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Println("got", string(body))
			return
		}
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}
