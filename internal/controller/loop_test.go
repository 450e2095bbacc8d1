package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startRun runs the controllers until the test ends.
func startRun(t *testing.T, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

// TestRunReplacesAllocationsOfADownNode runs the controllers in their own
// goroutines: a node stops heartbeating, the node controller's timer
// declares it down, the job controller replaces its allocations.
func TestRunReplacesAllocationsOfADownNode(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	reg := newFakeRegistry(clock)
	for _, n := range []string{"n1", "n2"} {
		reg.mustCommit(t, registry.Upsert(newNode(n, api.NodeReady, api.Active)),
			registry.PutHeartbeat(n, registry.Heartbeat{AgentID: n}))
	}
	reg.mustCommit(t, registry.Create(newJob("web", api.JobService, 2)))
	metrics := prometheus.NewRegistry()
	startRun(t, Config{Registry: reg, Clock: clock, Logger: quietLogger(), Metrics: metrics})

	eventually(t, "two allocations", func() bool { return len(reg.allocNames()) == 2 })
	uids := map[string]string{}
	for _, name := range reg.allocNames() {
		a := *reg.alloc(name)
		a.Spec.Node = "n1"
		a.Status.ClientStatus = api.ClientRunning
		reg.mustCommit(t, registry.Update(&a))
		uids[name] = a.UID
	}
	replaced := func() bool {
		for name, uid := range uids {
			a := reg.alloc(name)
			if a.UID == uid || a.Spec.PreviousNode != "n1" || a.Spec.Node != "" {
				return false
			}
		}
		return true
	}
	// n2 heartbeats while the clock runs; n1 is silent.
	eventually(t, "the allocations of n1 replaced", func() bool {
		reg.mustCommit(t, registry.PutHeartbeat("n2", registry.Heartbeat{AgentID: "n2"}))
		clock.Advance(100 * time.Millisecond)
		return replaced()
	})
	if st := reg.Snapshot().Nodes["n1"].Status.Status; st != api.NodeDown {
		t.Errorf("n1 is %s, want down", st)
	}
	if st := reg.Snapshot().Nodes["n2"].Status.Status; st != api.NodeReady {
		t.Errorf("n2 is %s, want ready", st)
	}
	families, err := metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, f := range families {
		if f.GetName() == "herd_controller_passes_total" {
			series = len(f.GetMetric())
		}
	}
	if series != 3 {
		t.Errorf("passes metric has %d series, want one per controller", series)
	}
}

// TestLoopBacksOffOnConflict checks that a loop whose commits conflict
// retries on the clock, with a doubling delay, and never spins.
func TestLoopBacksOffOnConflict(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	reg := newFakeRegistry(clock)
	reg.mustCommit(t, registry.Create(newJob("web", api.JobService, 1)))
	var mu sync.Mutex
	failures := 3
	reg.failCommit = func([]registry.Op) error {
		mu.Lock()
		defer mu.Unlock()
		if failures == 0 {
			return nil
		}
		failures--
		return fmt.Errorf("%w: injected", registry.ErrConflict)
	}
	base := reg.commitCount()
	cfg := Config{Registry: reg, Clock: clock, Logger: quietLogger()}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	l := newLoop(cfg, m, newJobController(cfg))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.run(ctx) }()
	defer func() { cancel(); <-done }()

	waitCtx, waitCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer waitCancel()
	for i, delay := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		// The loop is asleep on its retry timer after the i+1-th commit.
		if err := clock.BlockUntilContext(waitCtx, 1); err != nil {
			t.Fatalf("retry %d: the loop does not wait on a timer: %v", i, err)
		}
		if got := reg.commitCount() - base; got != i+1 {
			t.Fatalf("before retry %d: %d commits, want %d", i, got, i+1)
		}
		clock.Advance(delay - time.Millisecond)
		if got := reg.commitCount() - base; got != i+1 {
			t.Fatalf("retry %d came before its delay: %d commits", i, got)
		}
		clock.Advance(time.Millisecond)
		eventually(t, "the retry", func() bool { return reg.commitCount()-base == i+2 })
	}
	eventually(t, "the allocation", func() bool { return len(reg.allocNames()) == 1 })
	var conflicts dto.Metric
	if err := m.commits.WithLabelValues("job", "conflict").Write(&conflicts); err != nil {
		t.Fatal(err)
	}
	if got := conflicts.GetCounter().GetValue(); got != 3 {
		t.Errorf("conflict commits metric = %v, want 3", got)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	ctx := context.Background()
	if err := Run(ctx, Config{}); err == nil || !strings.Contains(err.Error(), "Config.Registry") {
		t.Errorf("Run without a registry: %v", err)
	}
	reg := newFakeRegistry(clockwork.NewFakeClock())
	err := Run(ctx, Config{Registry: reg, NodeGracePeriod: -time.Second})
	if err == nil || !strings.Contains(err.Error(), "NodeGracePeriod") {
		t.Errorf("Run with a negative grace period: %v", err)
	}
}

func TestRetryDelay(t *testing.T) {
	for failures, want := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 8: 10 * time.Second, 1000: 10 * time.Second,
	} {
		if got := retryDelay(failures); got != want {
			t.Errorf("retryDelay(%d) = %s, want %s", failures, got, want)
		}
	}
}

func TestIsConflictOnly(t *testing.T) {
	conflict := fmt.Errorf("x: %w", registry.ErrConflict)
	other := errors.New("store unreachable")
	for err, want := range map[error]bool{
		conflict:                               true,
		registry.ErrAlreadyExists:              true,
		errors.Join(conflict, conflict):        true,
		errors.Join(conflict, other):           false,
		other:                                  false,
		fmt.Errorf("%w", registry.ErrNotFound): true,
	} {
		if got := isConflictOnly(err); got != want {
			t.Errorf("isConflictOnly(%v) = %v", err, got)
		}
	}
}
