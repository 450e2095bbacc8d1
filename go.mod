module github.com/herd-project/herd

go 1.26.8

require (
	github.com/jonboulle/clockwork v0.5.0
	go.etcd.io/etcd/api/v3 v3.7.3
)

require google.golang.org/protobuf v1.36.11 // indirect
