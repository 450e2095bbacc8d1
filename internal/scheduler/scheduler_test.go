package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// harness runs a Scheduler on a fake registry and fake clock.
type harness struct {
	reg     *fakeRegistry
	clock   *clockwork.FakeClock
	metrics *prometheus.Registry
	sched   *Scheduler
}

func newHarness(t *testing.T, strategy Strategy) *harness {
	t.Helper()
	h := &harness{
		reg:     newFakeRegistry(),
		clock:   clockwork.NewFakeClockAt(t0),
		metrics: prometheus.NewRegistry(),
	}
	h.sched = New(Config{Registry: h.reg, Clock: h.clock, Strategy: string(strategy), Metrics: h.metrics})
	return h
}

// start runs the scheduler until the test ends.
func (h *harness) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.sched.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
	})
}

// metric returns the value of a counter, or the sample count of a
// histogram, of the harness's Prometheus registry.
func (h *harness) metric(t *testing.T, name string) float64 {
	t.Helper()
	families, err := h.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		if f.GetType() == dto.MetricType_HISTOGRAM {
			return float64(m.GetHistogram().GetSampleCount())
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func (h *harness) passes(t *testing.T) float64 {
	return h.metric(t, "herd_scheduler_pass_duration_seconds")
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitTimer waits until the scheduler, done with a pass, waits on its
// timer.
func (h *harness) waitTimer(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("scheduler never waited on a timer: %v", err)
	}
}

func placedOn(a *api.Allocation) string {
	if a == nil {
		return "<deleted>"
	}
	return a.Spec.Node
}

func TestSchedulerPlacesPendingAllocations(t *testing.T) {
	h := newHarness(t, Spread)
	oldEvents := make([]api.Event, api.MaxAllocEvents)
	for i := range oldEvents {
		oldEvents[i] = api.Event{Reason: fmt.Sprintf("old-%d", i)}
	}
	h.reg.put(
		testNode("n1"), testNode("n2"), testNode("n3"),
		testAlloc("web", 0, func(a *api.Allocation) { a.Status.Events = oldEvents }),
		testAlloc("web", 1),
		testAlloc("web", 2, func(a *api.Allocation) { a.Status.PlacementFailure = "0/0 nodes eligible: no nodes registered" }),
		testAlloc("stopped", 0, desired(api.DesiredStop)),
		testAlloc("running", 0, on("n1"), clientStatus(api.ClientRunning)),
		testAlloc("later", 0, notBefore(t0.Add(time.Hour))),
	)
	untouched := map[string]string{}
	for _, job := range []string{"stopped", "running", "later"} {
		untouched[job] = h.reg.alloc(job, 0).ResourceVersion
	}
	h.start(t)
	waitFor(t, "three placements", func() bool { return h.metric(t, "herd_scheduler_placements_total") == 3 })

	// running holds n1: spread sends web[0] to n2, web[1] to n3, web[2] to n1.
	for i, want := range []string{"n2", "n3", "n1"} {
		a := h.reg.alloc("web", i)
		if a.Spec.Node != want {
			t.Errorf("web[%d] on %q, want %q", i, a.Spec.Node, want)
		}
		if a.Status.PlacementFailure != "" {
			t.Errorf("web[%d] keeps placement failure %q", i, a.Status.PlacementFailure)
		}
		last := a.Status.Events[len(a.Status.Events)-1]
		wantEv := api.Event{Time: t0, Type: api.EventNormal, Kind: api.KindAllocation, Namespace: "default",
			Name: a.Name, Reason: ReasonScheduled, Message: "placed on " + want, Source: EventSource}
		if diff := cmp.Diff(wantEv, last); diff != "" {
			t.Errorf("web[%d] last event (-want +got):\n%s", i, diff)
		}
	}
	if events := h.reg.alloc("web", 0).Status.Events; len(events) != api.MaxAllocEvents || events[0].Reason != "old-1" {
		t.Errorf("web[0] events not capped at %d dropping the oldest: %+v", api.MaxAllocEvents, events)
	}
	for job, rv := range untouched {
		if got := h.reg.alloc(job, 0).ResourceVersion; got != rv {
			t.Errorf("%s was written (version %s -> %s)", job, rv, got)
		}
	}
	commits := h.reg.commitLog()
	if len(commits) != 1 || len(commits[0]) != 6 {
		t.Errorf("want one commit of 6 operations, got %d commits: %v", len(commits), commits)
	}
	var recorded []string
	for _, ev := range h.reg.recordedEvents() {
		recorded = append(recorded, ev.Name+" "+ev.Reason+" "+ev.Message)
	}
	want := []string{"web.g[0] Scheduled placed on n2", "web.g[1] Scheduled placed on n3", "web.g[2] Scheduled placed on n1"}
	if diff := cmp.Diff(want, recorded); diff != "" {
		t.Errorf("cluster events (-want +got):\n%s", diff)
	}
}

func TestSchedulerExplainsFailuresOnceAndPlacesWhenANodeFits(t *testing.T) {
	h := newHarness(t, Spread)
	h.reg.put(testAlloc("web", 0))
	h.start(t)

	failure := func() string { return h.reg.alloc("web", 0).Status.PlacementFailure }
	waitFor(t, "a placement failure", func() bool { return failure() == "0/0 nodes eligible: no nodes registered" })

	h.reg.put(testNode("n1", down))
	waitFor(t, "the failure to change", func() bool { return failure() == "0/1 nodes eligible: 1 down" })
	commits := len(h.reg.commitLog())

	// A change that leaves the explanation as it is writes nothing.
	passes := h.passes(t)
	h.reg.put(testNode("n1", down, label("rack", "r1")))
	waitFor(t, "another pass", func() bool { return h.passes(t) > passes })
	if got := len(h.reg.commitLog()); got != commits {
		t.Errorf("an unchanged explanation was written again: %d commits, want %d", got, commits)
	}

	h.reg.put(testNode("n1"))
	waitFor(t, "the placement", func() bool { return placedOn(h.reg.alloc("web", 0)) == "n1" })
	a := h.reg.alloc("web", 0)
	if a.Status.PlacementFailure != "" {
		t.Errorf("placement failure not cleared: %q", a.Status.PlacementFailure)
	}
	var got []string
	for _, ev := range a.Status.Events {
		got = append(got, string(ev.Type)+" "+ev.Reason+": "+ev.Message)
	}
	want := []string{
		"Warning PlacementFailed: 0/0 nodes eligible: no nodes registered",
		"Warning PlacementFailed: 0/1 nodes eligible: 1 down",
		"Normal Scheduled: placed on n1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allocation events (-want +got):\n%s", diff)
	}
	if n := len(h.reg.recordedEvents()); n != 3 {
		t.Errorf("%d cluster events, want 3", n)
	}
	if f := h.metric(t, "herd_scheduler_placement_failures_total"); f < 3 {
		t.Errorf("placement failures = %v, want at least 3", f)
	}
}

func TestSchedulerSplitsCommitsAtMaxOps(t *testing.T) {
	h := newHarness(t, Binpack)
	objs := []api.Object{testNode("n1", allocatable(1_000_000, 1000*gib))}
	const count = 120
	for i := range count {
		objs = append(objs, testAlloc("web", i))
	}
	h.reg.put(objs...)
	h.start(t)
	waitFor(t, "every placement", func() bool { return h.metric(t, "herd_scheduler_placements_total") == count })

	var sizes []int
	for _, ops := range h.reg.commitLog() {
		sizes = append(sizes, len(ops))
		for i := 0; i < len(ops); i += 2 {
			if ops[i].Kind != registry.Allocs || ops[i+1].Kind != registry.Events ||
				ops[i+1].Object.(*api.Event).Name != ops[i].Name {
				t.Errorf("an allocation's update and its event are not together: %+v, %+v", ops[i], ops[i+1])
			}
		}
	}
	if diff := cmp.Diff([]int{100, 100, 40}, sizes); diff != "" {
		t.Errorf("commit sizes (-want +got):\n%s", diff)
	}
}

func TestSchedulerRetriesConflictingAllocationsOneByOne(t *testing.T) {
	h := newHarness(t, Spread)
	h.reg.put(testNode("n1"), testNode("n2"), testAlloc("web", 0), testAlloc("web", 1), testAlloc("web", 2))
	// While the first commit is on its way, another writer stops web[1].
	h.reg.beforeCommit = func(n int, _ []registry.Op) error {
		if n == 0 {
			h.reg.put(testAlloc("web", 1, desired(api.DesiredStop)))
		}
		return nil
	}
	h.start(t)
	waitFor(t, "web[0] and web[2] placed", func() bool {
		return placedOn(h.reg.alloc("web", 0)) != "" && placedOn(h.reg.alloc("web", 2)) != ""
	})

	var got []string
	for _, ops := range h.reg.commitLog() {
		var names []string
		for _, op := range ops {
			if op.Kind == registry.Allocs {
				names = append(names, op.Name)
			}
		}
		got = append(got, strings.Join(names, " "))
	}
	want := []string{"web.g[0] web.g[1] web.g[2]", "web.g[0]", "web.g[2]"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allocations per commit (-want +got):\n%s", diff)
	}
	if a := h.reg.alloc("web", 1); a.Spec.Node != "" || a.Spec.DesiredStatus != api.DesiredStop {
		t.Errorf("web[1] = %+v, want stopped and unplaced", a.Spec)
	}
	if c := h.metric(t, "herd_scheduler_commit_conflicts_total"); c != 1 {
		t.Errorf("conflicts = %v, want 1", c)
	}

	// Once through, allocations are batched again.
	h.reg.put(testAlloc("web", 3), testAlloc("web", 4))
	waitFor(t, "web[3] and web[4] placed", func() bool {
		return placedOn(h.reg.alloc("web", 3)) != "" && placedOn(h.reg.alloc("web", 4)) != ""
	})
	if log := h.reg.commitLog(); len(log) != 4 || len(log[3]) != 4 {
		t.Errorf("want web[3] and web[4] in one commit, got commits %v", log[3:])
	}
}

func TestSchedulerDoesNotRetryAConflictWithoutAChange(t *testing.T) {
	h := newHarness(t, Spread)
	h.reg.put(testNode("n1"), testAlloc("web", 0))
	conflict := fmt.Errorf("allocation default/web.g[0]: %w", registry.ErrConflict)
	h.reg.beforeCommit = func(n int, _ []registry.Op) error {
		if n == 0 {
			return conflict
		}
		return nil
	}
	h.start(t)
	waitFor(t, "the conflict", func() bool { return h.metric(t, "herd_scheduler_commit_conflicts_total") == 1 })
	// No timer waits: a change notification, not the clock, brings the
	// next pass.
	passes := h.passes(t)
	h.clock.Advance(time.Hour)
	if got := h.passes(t); got != passes {
		t.Errorf("%v passes without a change after the conflict", got-passes)
	}
	h.reg.put(testNode("n2", down))
	waitFor(t, "web[0] placed", func() bool { return placedOn(h.reg.alloc("web", 0)) == "n1" })
	if got := len(h.reg.commitLog()); got != 2 {
		t.Errorf("%d commits, want 2", got)
	}
}

func TestSchedulerRetriesFailedCommitsAfterABackoff(t *testing.T) {
	h := newHarness(t, Spread)
	h.reg.put(testNode("n1"), testAlloc("web", 0))
	h.reg.beforeCommit = func(n int, _ []registry.Op) error {
		if n < 2 {
			return errors.New("store unavailable")
		}
		return nil
	}
	h.start(t)
	for attempt, delay := range []time.Duration{time.Second, 2 * time.Second} {
		h.waitTimer(t)
		if got := len(h.reg.commitLog()); got != attempt+1 {
			t.Fatalf("%d commits before the retry, want %d", got, attempt+1)
		}
		h.clock.Advance(delay - time.Nanosecond)
		if got := len(h.reg.commitLog()); got != attempt+1 {
			t.Fatalf("retried before the backoff of %v", delay)
		}
		h.clock.Advance(time.Nanosecond)
		waitFor(t, "the retry", func() bool { return len(h.reg.commitLog()) == attempt+2 })
	}
	waitFor(t, "web[0] placed", func() bool { return placedOn(h.reg.alloc("web", 0)) == "n1" })
}

func TestSchedulerWaitsForNotBefore(t *testing.T) {
	h := newHarness(t, Spread)
	h.reg.put(testNode("n1"),
		testAlloc("web", 0, notBefore(t0.Add(time.Minute))),
		testAlloc("web", 1, notBefore(t0.Add(30*time.Second))),
		testAlloc("web", 2, notBefore(t0.Add(time.Hour)), desired(api.DesiredStop)))
	h.start(t)

	h.waitTimer(t)
	h.clock.Advance(30 * time.Second)
	waitFor(t, "web[1] placed", func() bool { return placedOn(h.reg.alloc("web", 1)) == "n1" })
	if a := h.reg.alloc("web", 0); a.Spec.Node != "" {
		t.Fatalf("web[0] placed before its NotBefore")
	}
	// The pass after its own commit waits for web[0] again.
	waitFor(t, "the pass after the commit", func() bool { return h.passes(t) >= 3 })
	h.waitTimer(t)
	h.clock.Advance(30 * time.Second)
	waitFor(t, "web[0] placed", func() bool { return placedOn(h.reg.alloc("web", 0)) == "n1" })
}

func TestSchedulerConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no registry", Config{}, "scheduler: Config.Registry is required"},
		{"bad strategy", Config{Registry: newFakeRegistry(), Strategy: "fill"},
			`scheduler: Config.Strategy: unknown strategy "fill": want "spread" or "binpack"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New(tt.cfg).Run(context.Background())
			if err == nil || err.Error() != tt.want {
				t.Errorf("Run = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSchedulersShareMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := New(Config{Registry: newFakeRegistry(), Metrics: reg})
	b := New(Config{Registry: newFakeRegistry(), Metrics: reg})
	if a.err != nil || b.err != nil {
		t.Fatalf("New: %v, %v", a.err, b.err)
	}
	if a.metrics.placements != b.metrics.placements {
		t.Errorf("the second scheduler does not share the registered counter")
	}
}

func TestSchedulerStopsWhenTheSubscriptionEnds(t *testing.T) {
	h := newHarness(t, Spread)
	done := make(chan error, 1)
	go func() { done <- h.sched.Run(context.Background()) }()
	waitFor(t, "the first pass", func() bool { return h.passes(t) == 1 })
	waitFor(t, "the subscription", func() bool {
		h.reg.mu.Lock()
		defer h.reg.mu.Unlock()
		return len(h.reg.subs) == 1
	})
	h.reg.endSubscriptions()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "subscription") {
			t.Errorf("Run = %v, want an error about the subscription", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestAppendEvent(t *testing.T) {
	ev := func(i int) api.Event { return api.Event{Reason: fmt.Sprint(i)} }
	var events []api.Event
	for i := range api.MaxAllocEvents + 3 {
		prev := events
		events = appendEvent(events, ev(i))
		if len(prev) > 0 && &prev[0] == &events[0] {
			t.Fatal("appendEvent reuses its input")
		}
	}
	if len(events) != api.MaxAllocEvents || events[0].Reason != "3" || events[len(events)-1].Reason != fmt.Sprint(api.MaxAllocEvents+2) {
		t.Errorf("events = %+v", events)
	}
}
