package etcdserver

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// testConfig is a server on a free loopback port in a fresh data dir.
func testConfig(t *testing.T) Config {
	t.Helper()
	return Config{
		Name:             "test",
		DataDir:          t.TempDir(),
		ListenClientURLs: []string{"http://127.0.0.1:0"},
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		UnsafeNoFsync:    true,
	}
}

// startServer starts a server with cfg and closes it when the test ends.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// newClient connects an etcd client to s and closes it when the test ends.
func newClient(t *testing.T, s *Server) *clientv3.Client {
	t.Helper()
	return dial(t, s.ClientURLs()...)
}

// dial connects an etcd client to endpoints and closes it when the test ends.
func dial(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testCtx bounds a test's calls.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
