// Package etcdserver serves herd store's engine over the etcd v3 gRPC API
// (KV, Watch, Lease, Maintenance, Cluster), using etcd's own wire types.
package etcdserver

import (
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/herd-project/herd/internal/store/mvcc"
)

// Config configures a store server.
type Config struct {
	// Name of this member (etcd --name).
	Name string
	// DataDir holds the database (DataDir/member/herd.db).
	DataDir string
	// ListenClientURLs are http://host:port URLs to serve gRPC on; port 0 picks one.
	ListenClientURLs []string
	// AdvertiseClientURLs are reported by MemberList; defaults to the listen URLs.
	AdvertiseClientURLs []string
	// MaxRequestBytes limits a request's size (etcd default 1.5 MiB).
	MaxRequestBytes int
	// MaxTxnOps limits the operations in one Txn (etcd default 128).
	MaxTxnOps int
	// WatchProgressNotifyInterval is how often idle synced watchers that asked
	// for progress_notify get one (etcd default 10 minutes).
	WatchProgressNotifyInterval time.Duration
	// Clock drives lease expiry; defaults to the real clock.
	Clock clockwork.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// UnsafeNoFsync skips fsync (tests only).
	UnsafeNoFsync bool
}

// Defaults as in etcd.
const (
	DefaultMaxRequestBytes             = 1.5 * 1024 * 1024
	DefaultMaxTxnOps                   = 128
	DefaultWatchProgressNotifyInterval = 10 * time.Minute
)

// Server is a running store server.
//
// Contract between the files of this package: the Watch service
// (watch.go) is built by newWatchServer(s) and uses s.store, s.cfg,
// s.header and the watch hub it creates and registers itself through
// s.store.SetNotifier; everything else (KV, Lease, Maintenance, Cluster,
// listeners, lifecycle) lives in the other files.
type Server struct {
	cfg       Config
	store     *mvcc.Store
	memberID  uint64
	clusterID uint64
}

// header is the response header for a response at store revision rev.
func (s *Server) header(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: s.clusterID, MemberId: s.memberID, Revision: rev, RaftTerm: 1}
}

// Start opens the store in cfg.DataDir and serves it on cfg.ListenClientURLs.
func Start(cfg Config) (*Server, error) { panic("etcdserver: not implemented") }

// ClientURLs are the URLs the server actually listens on (ports resolved).
func (s *Server) ClientURLs() []string { panic("etcdserver: not implemented") }

// Close stops serving (gracefully, with a deadline) and closes the store.
func (s *Server) Close() error { panic("etcdserver: not implemented") }
