// Package storeclient connects the control plane to its store (herd store or
// etcd) with etcd's clientv3 and counts every request it sends, by kind:
// unary calls by method (Range, Txn, Put, DeleteRange, LeaseGrant, ...) and
// stream messages by what they ask (WatchCreate, WatchCancel,
// LeaseKeepAlive). The counts are exported as Prometheus metrics and are how
// herd measures the store traffic of a workload.
package storeclient

import (
	"context"
	"fmt"
	"maps"
	"path"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Counter counts store requests by kind. It is safe for concurrent use.
type Counter struct {
	mu     sync.Mutex
	counts map[string]int64
	vec    *prometheus.CounterVec
}

// NewCounter returns a counter registered on reg (which may be nil).
func NewCounter(reg prometheus.Registerer) (*Counter, error) {
	c := &Counter{
		counts: map[string]int64{},
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_store_requests_total",
			Help: "Requests the control plane sent to its store, by kind (Range, Txn, Put, DeleteRange, WatchCreate, LeaseGrant, ...).",
		}, []string{"request"}),
	}
	if reg != nil {
		if err := reg.Register(c.vec); err != nil {
			return nil, fmt.Errorf("storeclient: registering metrics: %w", err)
		}
	}
	return c, nil
}

func (c *Counter) add(kind string) {
	c.mu.Lock()
	c.counts[kind]++
	c.mu.Unlock()
	c.vec.WithLabelValues(kind).Inc()
}

// Counts returns a copy of the counts so far.
func (c *Counter) Counts() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

// Config says where the store is.
type Config struct {
	Endpoints   []string
	DialTimeout time.Duration
	// Counter, if set, counts the requests of the client.
	Counter *Counter
}

// New returns a connected client. It fails if no endpoint answers within
// the dial timeout (default 5s).
func New(ctx context.Context, cfg Config) (*clientv3.Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("storeclient: no store endpoints")
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	var opts []grpc.DialOption
	if c := cfg.Counter; c != nil {
		opts = append(opts,
			grpc.WithChainUnaryInterceptor(c.unary),
			grpc.WithChainStreamInterceptor(c.stream))
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		DialOptions: opts,
		Context:     ctx,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("storeclient: connecting to %v: %w", cfg.Endpoints, err)
	}
	// clientv3.New does not wait for a connection; a Status call proves one.
	sctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	var lastErr error
	for _, ep := range cfg.Endpoints {
		if _, lastErr = cli.Status(sctx, ep); lastErr == nil {
			return cli, nil
		}
	}
	cli.Close()
	return nil, fmt.Errorf("storeclient: store at %v does not answer: %w", cfg.Endpoints, lastErr)
}

func (c *Counter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.add(path.Base(method))
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *Counter) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &countingStream{ClientStream: s, c: c, method: path.Base(method)}, nil
}

// countingStream counts the messages a client sends on a stream: one watch
// stream carries every watch of a client, so the message is the request.
type countingStream struct {
	grpc.ClientStream
	c      *Counter
	method string
}

func (s *countingStream) SendMsg(m any) error {
	s.c.add(streamRequestKind(s.method, m))
	return s.ClientStream.SendMsg(m)
}

func streamRequestKind(method string, m any) string {
	if w, ok := m.(*pb.WatchRequest); ok {
		switch {
		case w.GetCreateRequest() != nil:
			return "WatchCreate"
		case w.GetCancelRequest() != nil:
			return "WatchCancel"
		case w.GetProgressRequest() != nil:
			return "WatchProgress"
		}
	}
	return method
}
