package storeclient

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/herd-project/herd/internal/store/etcdserver"
)

func TestCountsRequestsByKind(t *testing.T) {
	srv, err := etcdserver.Start(etcdserver.Config{
		DataDir:          t.TempDir(),
		ListenClientURLs: []string{"http://127.0.0.1:0"},
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		UnsafeNoFsync:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	counter, err := NewCounter(nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := New(ctx, Config{Endpoints: srv.ClientURLs(), Counter: counter})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	before := counter.Counts()
	if _, err := cli.Put(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("a"), ">", 0)).Then(clientv3.OpGet("a")).Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	wch := cli.Watch(clientv3.WithRequireLeader(wctx), "a", clientv3.WithCreatedNotify())
	<-wch // created
	wcancel()

	got := counter.Counts()
	for kind, want := range map[string]int64{"Put": 1, "Txn": 1, "Range": 1, "WatchCreate": 1} {
		if d := got[kind] - before[kind]; d != want {
			t.Errorf("%s: counted %d, want %d (all: %v)", kind, d, want, got)
		}
	}
}
