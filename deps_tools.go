//go:build tools

// Package herd pins modules used across the tree while it is being built up.
package herd

import (
	_ "github.com/google/btree"
	_ "github.com/jonboulle/clockwork"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/bbolt"
	_ "go.etcd.io/etcd/api/v3/etcdserverpb"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/etcdctl/v3/ctlv3"
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "google.golang.org/grpc"
	_ "google.golang.org/grpc/health"
)
