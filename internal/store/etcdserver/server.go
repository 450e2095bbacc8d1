// Package etcdserver serves herd store's engine over the etcd v3 gRPC API
// (KV, Watch, Lease, Maintenance, Cluster), using etcd's own wire types.
//
// Every handler reproduces what a single-member etcd answers, down to the
// order of its checks, its error values and the fields of its responses; the
// conformance suite diffs the two. Requests that etcd sends through raft
// (writes, compactions, lease grants and revocations, alarms) are size-checked
// as etcd checks its raft proposals and then applied to the engine directly:
// with one member, a committed entry is an applied one.
//
// The member and cluster IDs are derived from Config.Name by hashing (see
// deriveID), so they are stable across restarts without being persisted.
package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/herd-project/herd/internal/store/lease"
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
	DefaultName                        = "default"
	DefaultListenClientURL             = "http://localhost:2379"
	DefaultMaxRequestBytes             = 1.5 * 1024 * 1024
	DefaultMaxTxnOps                   = 128
	DefaultWatchProgressNotifyInterval = 10 * time.Minute
)

const (
	// grpcOverheadBytes is what etcd allows a gRPC message on top of
	// MaxRequestBytes.
	grpcOverheadBytes = 512 * 1024
	// leaseRestartGrace is etcd's default election timeout, which it adds to
	// every lease's TTL when a member becomes leader.
	leaseRestartGrace = time.Second
	// closeTimeout bounds the graceful part of Close.
	closeTimeout = 5 * time.Second
)

// Server is a running store server.
//
// Contract between the files of this package: the Watch service
// (watch.go) is built by newWatchServer(s) and uses s.store, s.cfg,
// s.header and the watch hub it creates and registers itself through
// s.store.SetNotifier; everything else (KV, Lease, Maintenance, Cluster,
// listeners, lifecycle) lives in the other files. s.stopc is closed when
// Close starts: long-lived streams must return when it is, so that the
// graceful stop does not wait for their clients.
type Server struct {
	cfg       Config
	store     *mvcc.Store
	memberID  uint64
	clusterID uint64

	log    *slog.Logger
	lessor *lease.Lessor
	alarms alarmStore
	reqIDs *reqIDGen

	// raftIndex counts the requests that etcd would have proposed to raft;
	// Status reports it as the raft index.
	raftIndex atomic.Uint64
	// compactedZero records a compaction at revision 0, which etcd accepts
	// once on a store that was never compacted.
	compactedZero atomic.Bool
	// compactHashes are the hashes taken at compactions.
	compactHashes hashHistory

	grpc       *grpc.Server
	health     *health.Server
	listeners  []net.Listener
	clientURLs []string
	serving    sync.WaitGroup

	stopc       chan struct{}
	stopLessor  context.CancelFunc
	lessorDone  chan struct{}
	closeOnce   sync.Once
	closeResult error
}

// header is the response header for a response at store revision rev.
func (s *Server) header(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: s.clusterID, MemberId: s.memberID, Revision: rev, RaftTerm: 1}
}

// currentHeader is the header of a response that reports the store's current
// revision.
func (s *Server) currentHeader() *pb.ResponseHeader { return s.header(s.store.Rev()) }

// withDefaults fills the zero fields of cfg.
func withDefaults(cfg Config) Config {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.DataDir == "" {
		cfg.DataDir = cfg.Name + ".etcd"
	}
	if len(cfg.ListenClientURLs) == 0 {
		cfg.ListenClientURLs = []string{DefaultListenClientURL}
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = DefaultMaxTxnOps
	}
	if cfg.WatchProgressNotifyInterval <= 0 {
		cfg.WatchProgressNotifyInterval = DefaultWatchProgressNotifyInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

// listenAddr is a parsed listen URL.
type listenAddr struct {
	raw, host, port string
}

// parseListenURL accepts http://host:port; the host may be empty and the port 0.
func parseListenURL(raw string) (listenAddr, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return listenAddr{}, fmt.Errorf("listen client URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http":
	case "https", "unixs":
		return listenAddr{}, fmt.Errorf("listen client URL %q: TLS is not supported yet, use http://", raw)
	case "unix":
		return listenAddr{}, fmt.Errorf("listen client URL %q: unix sockets are not supported yet, use http://", raw)
	default:
		return listenAddr{}, fmt.Errorf("listen client URL %q: want http://host:port", raw)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return listenAddr{}, fmt.Errorf("listen client URL %q: want http://host:port with no user, path or query", raw)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return listenAddr{}, fmt.Errorf("listen client URL %q: %w", raw, err)
	}
	return listenAddr{raw: raw, host: host, port: port}, nil
}

// Start opens the store in cfg.DataDir and serves it on cfg.ListenClientURLs.
func Start(cfg Config) (*Server, error) {
	cfg = withDefaults(cfg)
	addrs := make([]listenAddr, 0, len(cfg.ListenClientURLs))
	for _, raw := range cfg.ListenClientURLs {
		a, err := parseListenURL(raw)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
	}

	memberDir := filepath.Join(cfg.DataDir, "member")
	if err := os.MkdirAll(memberDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	st, err := mvcc.Open(filepath.Join(memberDir, "herd.db"), mvcc.Options{Logger: cfg.Logger, NoSync: cfg.UnsafeNoFsync})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}

	s := &Server{
		cfg:        cfg,
		store:      st,
		memberID:   deriveID("member", cfg.Name),
		clusterID:  deriveID("cluster", cfg.Name),
		log:        cfg.Logger,
		stopc:      make(chan struct{}),
		lessorDone: make(chan struct{}),
	}
	s.reqIDs = newReqIDGen(s.memberID, time.Now())
	s.raftIndex.Store(uint64(max(st.Rev(), 0)))
	saved, err := st.Alarms()
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.alarms.load(st, saved)

	// The watch service registers itself as the engine's notifier, which must
	// happen before the first write (the lessor may revoke leases at once).
	watchServer := newWatchServer(s)

	s.lessor = lease.New(lease.NewStoreBackend(st), lease.Config{
		Clock:        cfg.Clock,
		Logger:       cfg.Logger,
		RestartGrace: leaseRestartGrace,
	})
	ctx, cancel := context.WithCancel(context.Background())
	s.stopLessor = cancel
	go func() {
		defer close(s.lessorDone)
		s.lessor.Run(ctx)
	}()

	for _, a := range addrs {
		l, err := net.Listen("tcp", net.JoinHostPort(a.host, a.port))
		if err != nil {
			s.abortStart()
			return nil, fmt.Errorf("listen on %s: %w", a.raw, err)
		}
		s.listeners = append(s.listeners, l)
		s.clientURLs = append(s.clientURLs, clientURL(a, l.Addr()))
	}

	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes+grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	)
	pb.RegisterKVServer(s.grpc, &kvServer{s: s})
	pb.RegisterWatchServer(s.grpc, watchServer)
	pb.RegisterLeaseServer(s.grpc, &leaseServer{s: s})
	pb.RegisterMaintenanceServer(s.grpc, &maintenanceServer{s: s})
	pb.RegisterClusterServer(s.grpc, &clusterServer{s: s})
	pb.RegisterAuthServer(s.grpc, &authServer{s: s})
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)

	for _, l := range s.listeners {
		s.serving.Add(1)
		go func() {
			defer s.serving.Done()
			if err := s.grpc.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				s.log.Error("gRPC server stopped", "address", l.Addr().String(), "error", err)
			}
		}()
	}
	s.log.Info("store serving", "name", cfg.Name, "member_id", fmt.Sprintf("%x", s.memberID),
		"cluster_id", fmt.Sprintf("%x", s.clusterID), "client_urls", s.clientURLs, "revision", st.Rev())
	return s, nil
}

// clientURL is the URL a listener serves: the configured host (or the bound
// address if none was given) with the port actually bound.
func clientURL(a listenAddr, bound net.Addr) string {
	host := a.host
	boundHost, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return "http://" + bound.String()
	}
	if host == "" {
		host = boundHost
	}
	return "http://" + net.JoinHostPort(host, port)
}

// abortStart undoes a Start that failed after the store was opened.
func (s *Server) abortStart() {
	close(s.stopc)
	for _, l := range s.listeners {
		_ = l.Close()
	}
	s.stopLessor()
	<-s.lessorDone
	if err := s.store.Close(); err != nil {
		s.log.Warn("closing store after failed start", "error", err)
	}
}

// ClientURLs are the URLs the server actually listens on (ports resolved).
func (s *Server) ClientURLs() []string { return append([]string(nil), s.clientURLs...) }

// advertiseURLs are the client URLs MemberList reports.
func (s *Server) advertiseURLs() []string {
	if len(s.cfg.AdvertiseClientURLs) > 0 {
		return append([]string(nil), s.cfg.AdvertiseClientURLs...)
	}
	return s.ClientURLs()
}

// Close stops serving (gracefully, with a deadline) and closes the store.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopc)
		s.health.Shutdown()
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			s.grpc.GracefulStop()
		}()
		timer := time.NewTimer(closeTimeout)
		select {
		case <-stopped:
		case <-timer.C:
			s.log.Warn("graceful stop timed out; closing remaining connections", "timeout", closeTimeout)
			s.grpc.Stop()
			<-stopped
		}
		timer.Stop()
		s.serving.Wait()
		s.stopLessor()
		<-s.lessorDone
		if err := s.store.Close(); err != nil {
			s.closeResult = fmt.Errorf("close store: %w", err)
		}
		s.log.Info("store stopped", "name", s.cfg.Name)
	})
	return s.closeResult
}
