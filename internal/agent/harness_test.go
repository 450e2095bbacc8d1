package agent

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

// waitTimeout bounds every wait of a test, in real time.
const waitTimeout = 10 * time.Second

// harness runs an Agent against a fake API server and a fake driver on a
// fake clock.
type harness struct {
	t     *testing.T
	clock *clockwork.FakeClock
	srv   *fakeServer
	drv   *fakeDriver
	cfg   Config
	agent *Agent

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

func newHarness(t *testing.T, mods ...func(*Config)) *harness {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	h := &harness{t: t, clock: clock, srv: newFakeServer(), drv: newFakeDriver(testDriver, clock)}
	h.cfg = Config{
		Name:    testNode,
		DataDir: t.TempDir(),
		Clock:   clock,
		Logger:  testLogger(t),
	}
	for _, m := range mods {
		m(&h.cfg)
	}
	return h
}

// start runs the agent and waits until it watches allocations.
func (h *harness) start() *harness {
	h.t.Helper()
	h.run()
	h.eventually("the agent watches allocations", func() bool { return len(h.srv.watches()) > 0 })
	return h
}

// run runs the agent.
func (h *harness) run() {
	h.t.Helper()
	cfg := h.cfg
	cfg.Server = h.srv
	if cfg.Drivers == nil {
		cfg.Drivers = []driver.Driver{h.drv}
	}
	a, err := New(cfg)
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	h.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	h.stopOnce = sync.Once{}
	go func() { h.done <- a.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// stop ends Run and waits for it.
func (h *harness) stop() {
	h.stopOnce.Do(func() {
		h.cancel()
		select {
		case err := <-h.done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			h.t.Fatalf("Run did not return after its context ended")
		}
	})
}

// eventually waits until cond holds.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// advanceUntil moves the fake clock forward in steps until cond holds.
func (h *harness) advanceUntil(what string, step time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting until %s", what)
		}
		h.clock.Advance(step)
		time.Sleep(time.Millisecond)
	}
}

// status is the allocation's status as the server holds it.
func (h *harness) status(a *api.Allocation) api.AllocStatus {
	return h.srv.get(allocKey(a)).Status
}

func (h *harness) clientStatusIs(a *api.Allocation, s api.ClientStatus) func() bool {
	return func() bool { return h.status(a).ClientStatus == s }
}

func (h *harness) hasEvent(a *api.Allocation, reason, text string) bool {
	for _, ev := range h.status(a).Events {
		if ev.Reason == reason && strings.Contains(ev.Message, text) {
			return true
		}
	}
	return false
}

func (h *harness) eventReasons(a *api.Allocation) []string {
	var out []string
	for _, ev := range h.status(a).Events {
		out = append(out, ev.Reason)
	}
	return out
}

func taskID(uid, task string) driver.TaskID { return driver.TaskID{AllocUID: uid, Task: task} }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func indexOf(calls []string, call string) int { return slices.Index(calls, call) }

func mustAtoi(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		panic(err)
	}
	return n
}

var exitFailure = driver.ExitResult{ExitCode: 1}
