// Package e2e holds end-to-end tests that run the real herd binary as a
// separate process and talk to it with real clients: etcdctl (built from the
// etcd module, plus the system's etcdctl when one is installed) and etcd's Go
// client. TestMain builds the binaries once; `go test -short` skips the
// package.
package e2e
