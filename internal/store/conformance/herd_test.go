package conformance

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/herd-project/herd/internal/store/etcdserver"
)

// startHerd starts herd's store server with default settings except for
// opts.
func startHerd(t testing.TB, name string, opts serverOpts) *target {
	t.Helper()
	return startHerdIn(t, name, opts, t.TempDir())
}

// startHerdIn starts herd's store server on data directory dir.
func startHerdIn(t testing.TB, name string, opts serverOpts, dir string) *target {
	t.Helper()
	cfg := etcdserver.Config{
		Name:                        name,
		DataDir:                     dir,
		ListenClientURLs:            []string{"http://127.0.0.1:0"},
		UnsafeNoFsync:               true,
		Logger:                      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MaxRequestBytes:             int(opts.MaxRequestBytes),
		WatchProgressNotifyInterval: opts.WatchProgressNotifyInterval,
	}
	var (
		srv *etcdserver.Server
		err error
		eps []string
	)
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		srv, err = etcdserver.Start(cfg)
		if err == nil {
			eps = srv.ClientURLs()
		}
	}()
	if err != nil {
		t.Fatalf("start herd store server: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if err := srv.Close(); err != nil {
				t.Errorf("close herd store server: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	if len(eps) == 0 {
		t.Fatalf("herd store server reports no client URLs")
	}
	tg := connect(t, "herd", name, eps[0])
	tg.restart = func(t testing.TB) *target {
		tg.disconnect()
		stop()
		return startHerdIn(t, name, opts, dir)
	}
	return tg
}
