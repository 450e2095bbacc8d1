package scheduler

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
	"github.com/herd-project/herd/internal/registry/registrytest"
	"github.com/prometheus/client_golang/prometheus"
)

// TestSchedulerOnTheRealRegistry runs the scheduler on a registry over an
// in-process herd store: a conflict with another writer is retried,
// bindings and failures land in the store, a drain steers new placements
// away and a grown node takes what did not fit.
func TestSchedulerOnTheRealRegistry(t *testing.T) {
	reg, _ := registrytest.New(t, registry.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	commit := func(ops ...registry.Op) {
		t.Helper()
		if _, err := reg.Commit(ctx, ops...); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	alloc := func(job string, index int) *api.Allocation {
		return reg.Snapshot().Allocs[registry.Key(api.DefaultNamespace, api.AllocName(job, "g", index))]
	}
	fresh := func(a *api.Allocation) *api.Allocation {
		a.UID = ""
		return a
	}
	commit(
		registry.Create(testNode("n1")),
		registry.Create(testNode("n2")),
		registry.Create(fresh(testAlloc("web", 0))),
		registry.Create(fresh(testAlloc("web", 1))),
		registry.Create(fresh(testAlloc("web", 2))),
		registry.Create(fresh(testAlloc("huge", 0, asks(1000, 64*gib)))),
	)

	// Another writer labels web[1] while the scheduler's first Commit is on
	// its way, so that Commit conflicts in the store.
	interfering := &interferingRegistry{Registry: reg, before: func() {
		a := *alloc("web", 1)
		a.Labels = map[string]string{"touched": "yes"}
		if _, err := reg.Commit(ctx, registry.Update(&a)); err != nil {
			t.Errorf("the other writer's Commit: %v", err) // not Fatal: runs in the scheduler's goroutine
		}
	}}
	metrics := prometheus.NewRegistry()
	s := New(Config{Registry: interfering, Metrics: metrics})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	waitFor(t, "web placed and huge explained", func() bool {
		return alloc("web", 0).Spec.Node != "" && alloc("web", 1).Spec.Node != "" && alloc("web", 2).Spec.Node != "" &&
			alloc("huge", 0).Status.PlacementFailure != ""
	})
	if got := []string{alloc("web", 0).Spec.Node, alloc("web", 1).Spec.Node, alloc("web", 2).Spec.Node}; got[0] != "n1" || got[1] != "n2" || got[2] != "n1" {
		t.Errorf("web placed on %v, want spread over [n1 n2 n1]", got)
	}
	if got, want := alloc("huge", 0).Status.PlacementFailure, "0/2 nodes eligible: 2 lacked memory"; got != want {
		t.Errorf("huge: placement failure %q, want %q", got, want)
	}
	if a := alloc("web", 1); a.Labels["touched"] != "yes" {
		t.Errorf("the other writer's change was lost: %+v", a.Meta)
	}
	h := &harness{metrics: metrics}
	if c := h.metric(t, "herd_scheduler_commit_conflicts_total"); c != 1 {
		t.Errorf("%v conflicts, want 1", c)
	}
	reasons := map[string]int{}
	for _, ev := range reg.Events() {
		if ev.Source == EventSource {
			reasons[ev.Reason]++
		}
	}
	if reasons[ReasonScheduled] != 3 || reasons[ReasonPlacementFailed] != 1 {
		t.Errorf("recorded events by reason: %v, want 3 %s and 1 %s", reasons, ReasonScheduled, ReasonPlacementFailed)
	}

	// Drain n1: new allocations go to n2 even though n2 holds more.
	n1 := *reg.Snapshot().Nodes["n1"]
	n1.Spec.Availability = api.Drain
	commit(registry.Update(&n1), registry.Create(fresh(testAlloc("web", 3))))
	waitFor(t, "web[3] placed", func() bool { return alloc("web", 3).Spec.Node != "" })
	if got := alloc("web", 3).Spec.Node; got != "n2" {
		t.Errorf("web[3] placed on %s, want n2 (n1 drains)", got)
	}

	// The node grows: huge fits now, and its failure is cleared.
	n2 := *reg.Snapshot().Nodes["n2"]
	n2.Status.Allocatable.Memory = 128 * gib
	commit(registry.Update(&n2))
	waitFor(t, "huge placed", func() bool { return alloc("huge", 0).Spec.Node == "n2" })
	if f := alloc("huge", 0).Status.PlacementFailure; f != "" {
		t.Errorf("huge keeps placement failure %q", f)
	}
}

// interferingRegistry runs before ahead of the first Commit.
type interferingRegistry struct {
	*registry.Registry
	before  func()
	commits atomic.Int32
}

func (r *interferingRegistry) Commit(ctx context.Context, ops ...registry.Op) (int64, error) {
	if r.commits.Add(1) == 1 {
		r.before()
	}
	return r.Registry.Commit(ctx, ops...)
}
