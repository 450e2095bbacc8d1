package registry_test

import (
	"errors"
	"testing"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/benchkv/etcdtest"
	"github.com/herd-project/herd/internal/registry"
	"github.com/herd-project/herd/internal/registry/registrytest"
)

// TestOnEtcd runs the registry's basic cycle against a real etcd, since
// the registry must run the same on etcd as on herd store.
func TestOnEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded etcd")
	}
	cli := registrytest.Dial(t, etcdtest.Start(t))
	r := registrytest.Open(t, cli, registry.Options{})
	ctx := testCtx(t)

	start := r.Revision()
	j := newJob("web")
	mustCommit(t, r, registry.Create(j), registry.RecordEvent(api.Event{Reason: "Created"}))
	if _, err := r.Commit(ctx, registry.Create(newJob("web"))); !errors.Is(err, registry.ErrAlreadyExists) {
		t.Fatalf("second create: %v", err)
	}
	stale := *j
	upd := *j
	upd.Spec.Priority = 80
	mustCommit(t, r, registry.Update(&upd))
	if _, err := r.Commit(ctx, registry.Update(&stale)); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	ch, err := r.Watch(ctx, registry.Jobs, start)
	if err != nil {
		t.Fatal(err)
	}
	if c := recv(t, ch); c.Type != api.Added {
		t.Fatalf("replayed %+v", c)
	}
	if c := recv(t, ch); c.Type != api.Modified || c.Object.(*api.Job).Spec.Priority != 80 {
		t.Fatalf("replayed %+v", c)
	}
	// A write outside the prefix: progress notifications carry the cache
	// past it.
	resp, err := cli.Put(ctx, "/elsewhere", "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitRevision(ctx, resp.Header.Revision); err != nil {
		t.Fatalf("WaitRevision on etcd: %v", err)
	}
	if got := r.Snapshot().Jobs["default/web"]; got == nil || got.Spec.Priority != 80 || len(r.Events()) != 1 {
		t.Fatalf("cache on etcd: %+v, %d events", got, len(r.Events()))
	}
}
