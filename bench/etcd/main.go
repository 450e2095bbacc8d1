// Package main is an unmodified etcd server, built from the etcd Go module
// pinned in go.mod, so that bench/kv.sh can compare herd store with etcd
// using `go build` alone, without downloading a release binary. It accepts
// etcd's usual flags (see `etcd --help`).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
