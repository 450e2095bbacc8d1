// Package registrytest runs a herd store in the test process and opens a
// registry on it, so that tests of the control plane use the real store
// and the real registry rather than fakes.
package registrytest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/herd-project/herd/internal/registry"
	"github.com/herd-project/herd/internal/store/etcdserver"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Store is a running herd store and a client of it.
type Store struct {
	Server  *etcdserver.Server
	Client  *clientv3.Client
	DataDir string
}

// StartStore starts a herd store in a fresh temporary directory on a free
// loopback port; it is stopped when the test ends.
func StartStore(t testing.TB) *Store {
	t.Helper()
	return StartStoreIn(t, t.TempDir())
}

// StartStoreIn starts a herd store on the data in dataDir (to restart a
// store that a test closed); it is stopped when the test ends.
func StartStoreIn(t testing.TB, dataDir string) *Store {
	t.Helper()
	return StartStoreOn(t, dataDir, "http://127.0.0.1:0")
}

// StartStoreOn starts a herd store on the data in dataDir, serving on
// listenURL (http://host:port); it is stopped when the test ends.
func StartStoreOn(t testing.TB, dataDir, listenURL string) *Store {
	t.Helper()
	s, err := etcdserver.Start(etcdserver.Config{
		Name:             "test",
		DataDir:          dataDir,
		ListenClientURLs: []string{listenURL},
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		UnsafeNoFsync:    true,
	})
	if err != nil {
		t.Fatalf("start herd store: %v", err)
	}
	st := &Store{Server: s, DataDir: dataDir}
	t.Cleanup(func() { _ = st.Close() })
	st.Client = Dial(t, s.ClientURLs()...)
	return st
}

// Close stops the store early (Cleanup does it otherwise).
func (s *Store) Close() error {
	_ = s.Client.Close()
	return s.Server.Close()
}

// Dial connects an etcd client to endpoints; it is closed when the test
// ends.
func Dial(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("store client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Open opens a registry on cli; it is closed when the test ends. A nil
// Logger in o discards the registry's logs.
func Open(t testing.TB, cli *clientv3.Client, o registry.Options) *registry.Registry {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := registry.Open(ctx, cli, o)
	if err != nil {
		t.Fatalf("open registry: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// New starts a herd store and opens a registry on it.
func New(t testing.TB, o registry.Options) (*registry.Registry, *Store) {
	t.Helper()
	s := StartStore(t)
	return Open(t, s.Client, o), s
}
