package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

func TestRegistersNode(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Labels = map[string]string{"zone": "a"}
		c.Reserved = api.Resources{CPU: 500}
	})
	h.drv.fp = driver.Fingerprint{Healthy: true, Message: "cgroups unavailable: limits not enforced", Attributes: map[string]string{"version": "1", "driver.fake.cgroups": "v2"}}
	h.start()
	n := h.srv.node(testNode)
	if n.Status.Address != h.agent.Addr() || n.Status.AgentID == "" || n.Status.Status != api.NodeReady {
		t.Errorf("address %q (listening on %q), agentID %q, status %q", n.Status.Address, h.agent.Addr(), n.Status.AgentID, n.Status.Status)
	}
	if diff := cmp.Diff([]string{testDriver}, n.Status.Drivers); diff != "" {
		t.Errorf("drivers (-want +got):\n%s", diff)
	}
	if got, want := n.Status.Allocatable.CPU, n.Status.Capacity.CPU-500; got != want || want <= 0 {
		t.Errorf("allocatable cpu %d, want capacity %d - 500", got, n.Status.Capacity.CPU)
	}
	if n.Status.Message != "fake: cgroups unavailable: limits not enforced" {
		t.Errorf("message %q", n.Status.Message)
	}
	if n.Labels["zone"] != "a" || n.Status.Attributes["driver.fake.version"] != "1" || n.Status.Attributes["driver.fake.cgroups"] != "v2" || n.Status.Attributes[api.AttrName] != testNode {
		t.Errorf("labels %v, attributes %v", n.Labels, n.Status.Attributes)
	}
}

func TestUnhealthyDriverIsNotAdvertised(t *testing.T) {
	h := newHarness(t)
	h.drv.fp = driver.Fingerprint{Healthy: false, Message: "no such binary"}
	h.start()
	a := testAlloc(0, "u1", testNode)
	h.srv.put(a)
	h.eventually("the allocation is rejected", h.clientStatusIs(a, api.ClientFailed))
	n := h.srv.node(testNode)
	if len(n.Status.Drivers) != 0 || n.Status.Message != "fake: unhealthy: no such binary" {
		t.Errorf("drivers %v, message %q", n.Status.Drivers, n.Status.Message)
	}
}

func TestStartsAllocations(t *testing.T) {
	h := newHarness(t)
	listed := testAlloc(0, "u1", testNode)
	h.srv.put(listed)
	h.start()
	watched := testAlloc(1, "u2", testNode)
	h.srv.put(watched)

	for _, a := range []*api.Allocation{listed, watched} {
		h.eventually(a.Name+" runs", h.clientStatusIs(a, api.ClientRunning))
		st := h.status(a).Tasks["main"]
		if st.State != api.TaskRunning || st.PID == 0 || st.StartedAt.IsZero() {
			t.Errorf("%s: task state %+v", a.Name, st)
		}
		if !h.hasEvent(a, EventStarted, "task main: started (pid") {
			t.Errorf("%s: events %v", a.Name, h.eventReasons(a))
		}
	}
	starts := h.drv.startsOf(taskID("u2", "main"))
	if len(starts) != 1 {
		t.Fatalf("u2 started %d times", len(starts))
	}
	req := starts[0].req
	dir := filepath.Join(h.agent.cfg.DataDir, "allocs", "u2", "main")
	if req.Dir != dir || req.LogDir != filepath.Join(dir, "logs") || req.Namespace != "default" || req.AllocName != "web.web[1]" {
		t.Errorf("start request %+v", req)
	}
	if fi, err := os.Stat(req.LogDir); err != nil || !fi.IsDir() {
		t.Errorf("log dir not created: %v", err)
	}
	wantEnv := map[string]string{
		"HERD_ALLOC_NAME": "web.web[1]", "HERD_ALLOC_UID": "u2", "HERD_ALLOC_INDEX": "1",
		"HERD_JOB": "web", "HERD_GROUP": "web", "HERD_TASK": "main", "HERD_NAMESPACE": "default",
		"HERD_NODE": testNode, "HERD_TASK_DIR": dir,
	}
	if diff := cmp.Diff(wantEnv, req.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
}

func TestRestartsWithBackoffThenFails(t *testing.T) {
	h := newHarness(t).start()
	a := testAlloc(0, "u1", testNode, withTasks("main", "side"), withPolicy(2, time.Second, api.RestartFail))
	h.srv.put(a)
	main, side := taskID("u1", "main"), taskID("u1", "side")
	h.eventually("both tasks run", func() bool { return h.drv.running(main) && h.drv.running(side) })

	for i, wantDelay := range []time.Duration{time.Second, 2 * time.Second} {
		if err := h.drv.exit(main, driver.ExitResult{ExitCode: 1}); err != nil {
			t.Fatal(err)
		}
		h.eventually("the restart is announced", func() bool {
			return h.hasEvent(a, EventRestarting, "task main: restarting in "+wantDelay.String())
		})
		exitedAt := h.clock.Now()
		h.advanceUntil("main restarts", 50*time.Millisecond, func() bool { return len(h.drv.startsOf(main)) == i+2 })
		if gap := h.drv.startsOf(main)[i+1].at.Sub(exitedAt); gap < wantDelay || gap > wantDelay+time.Second {
			t.Errorf("restart %d after %s, want %s", i+1, gap, wantDelay)
		}
		h.eventually("the restart is reported", func() bool {
			st := h.status(a).Tasks["main"]
			return st.Restarts == i+1 && st.State == api.TaskRunning
		})
	}
	if h.status(a).ClientStatus != api.ClientRunning {
		t.Errorf("client status %q while restarting", h.status(a).ClientStatus)
	}

	if err := h.drv.exit(main, driver.ExitResult{ExitCode: 2}); err != nil {
		t.Fatal(err)
	}
	h.eventually("the allocation fails and side is stopped", func() bool {
		st := h.status(a)
		return st.ClientStatus == api.ClientFailed && st.Tasks["side"].State == api.TaskDead
	})
	st := h.status(a)
	if m := st.Tasks["main"]; m.State != api.TaskDead || !m.Failed || m.ExitCode == nil || *m.ExitCode != 2 || m.Restarts != 2 {
		t.Errorf("main: %+v", m)
	}
	if s := st.Tasks["side"]; s.State != api.TaskDead || s.Failed {
		t.Errorf("side (stopped because main failed): %+v", s)
	}
	if stops := h.drv.stopsOf(side); len(stops) != 1 || stops[0].timeout != 3*time.Second {
		t.Errorf("side stops %+v, want one with the 3s kill timeout", stops)
	}
	if !h.hasEvent(a, EventNotRestarting, "restart attempts exhausted (2 within 1h0m0s)") {
		t.Errorf("events %v", h.eventReasons(a))
	}
	h.eventually("the failed tasks' driver state is removed", func() bool { return h.drv.destroyed(main) && h.drv.destroyed(side) })
	if len(h.drv.startsOf(main)) != 3 || h.drv.duplicateStarts() != 0 {
		t.Errorf("main started %d times, %d duplicates", len(h.drv.startsOf(main)), h.drv.duplicateStarts())
	}
}

func TestStartFailureCountsAsAttempt(t *testing.T) {
	h := newHarness(t)
	h.drv.startErr = func(driver.StartRequest) error { return errors.New("exec: no such file") }
	h.start()
	a := testAlloc(0, "u1", testNode, withPolicy(1, time.Second, api.RestartFail))
	h.srv.put(a)
	h.advanceUntil("the allocation fails", 100*time.Millisecond, h.clientStatusIs(a, api.ClientFailed))
	if !h.hasEvent(a, EventDriverFailure, "task main: failed to start: exec: no such file") {
		t.Errorf("events %v", h.eventReasons(a))
	}
	if n := len(h.drv.startsOf(taskID("u1", "main"))); n != 2 {
		t.Errorf("%d start attempts, want 2", n)
	}
}

func TestBatchCompletes(t *testing.T) {
	h := newHarness(t).start()
	a := testAlloc(0, "u1", testNode, withBatch(), withTasks("a", "b"))
	h.srv.put(a)
	ta, tb := taskID("u1", "a"), taskID("u1", "b")
	h.eventually("tasks run", func() bool { return h.drv.running(ta) && h.drv.running(tb) })
	if err := h.drv.exit(ta, driver.ExitResult{}); err != nil {
		t.Fatal(err)
	}
	h.eventually("a is reported dead", func() bool { return h.status(a).Tasks["a"].State == api.TaskDead })
	if got := h.status(a).ClientStatus; got != api.ClientRunning {
		t.Errorf("client status %q with one task left, want running", got)
	}
	if err := h.drv.exit(tb, driver.ExitResult{}); err != nil {
		t.Fatal(err)
	}
	h.eventually("the allocation completes", h.clientStatusIs(a, api.ClientComplete))
	if s := h.status(a).Tasks["b"]; s.Failed || s.ExitCode == nil || *s.ExitCode != 0 || s.Restarts != 0 {
		t.Errorf("b: %+v", s)
	}
	h.eventually("driver state is removed once the server knows", func() bool { return h.drv.destroyed(ta) && h.drv.destroyed(tb) })
	if len(h.drv.startsOf(ta)) != 1 {
		t.Errorf("a started %d times", len(h.drv.startsOf(ta)))
	}
}

func TestStopsOnDesiredStop(t *testing.T) {
	h := newHarness(t).start()
	a := testAlloc(0, "u1", testNode)
	h.srv.put(a)
	id := taskID("u1", "main")
	h.eventually("running", h.clientStatusIs(a, api.ClientRunning))
	h.srv.update(allocKey(a), func(a *api.Allocation) {
		a.Spec.DesiredStatus = api.DesiredStop
		a.Spec.DesiredReason = "scaled down"
	})
	h.eventually("complete", h.clientStatusIs(a, api.ClientComplete))
	if stops := h.drv.stopsOf(id); len(stops) != 1 || stops[0].timeout != 3*time.Second {
		t.Errorf("stops %+v", stops)
	}
	if !h.hasEvent(a, EventKilling, "scaled down") || !h.hasEvent(a, EventKilled, "killed by SIGTERM") {
		t.Errorf("events %v", h.eventReasons(a))
	}
	if s := h.status(a).Tasks["main"]; s.State != api.TaskDead || s.Failed || s.Signal != "SIGTERM" {
		t.Errorf("task %+v", s)
	}
	h.eventually("destroyed", func() bool { return h.drv.destroyed(id) })
	if len(h.drv.startsOf(id)) != 1 {
		t.Errorf("restarted after a stop")
	}
	// Logs stay while the allocation is listed; they go with it.
	dir := filepath.Join(h.agent.cfg.DataDir, "allocs", "u1")
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("directory of a listed allocation: %v", err)
	}
	h.srv.remove(allocKey(a))
	h.eventually("the directory is removed", func() bool {
		_, err := os.Stat(dir)
		return os.IsNotExist(err)
	})
}

func TestStopsReplacedIncarnation(t *testing.T) {
	h := newHarness(t).start()
	a := testAlloc(0, "u1", testNode, withPort(8080))
	h.srv.put(a)
	h.eventually("running", h.clientStatusIs(a, api.ClientRunning))

	// Replaced in place on the same node: the old incarnation stops, the
	// new one starts once the port is free.
	h.srv.put(testAlloc(0, "u2", testNode, withPort(8080)))
	h.eventually("u2 runs", func() bool { return h.drv.running(taskID("u2", "main")) })
	calls := h.drv.callLog()
	if stop, start := indexOf(calls, "stop u1/main"), indexOf(calls, "start u2/main"); stop < 0 || stop > start {
		t.Errorf("calls %v: want u1 stopped before u2 starts", calls)
	}
	for _, r := range h.srv.reportsOf("u1") {
		if r.Status.ClientStatus != api.ClientRunning && r.Status.ClientStatus != api.ClientPending {
			t.Errorf("reported %q for the replaced incarnation", r.Status.ClientStatus)
		}
	}
	h.eventually("u1's state and directory are removed", func() bool {
		_, err := os.Stat(filepath.Join(h.agent.cfg.DataDir, "allocs", "u1"))
		return h.drv.destroyed(taskID("u1", "main")) && os.IsNotExist(err)
	})

	// Replaced elsewhere: the watch sends DELETED.
	h.srv.update(allocKey(a), func(a *api.Allocation) {
		a.UID, a.Spec.Node, a.Status = "u3", "", api.AllocStatus{ClientStatus: api.ClientPending}
	})
	h.eventually("u2 stops", func() bool { return !h.drv.running(taskID("u2", "main")) })
}

func TestStopsWhenReportIsRefused(t *testing.T) {
	h := newHarness(t)
	h.srv.reportHook = func(r api.AllocStatusReport) error {
		if r.Status.Tasks["main"].Restarts > 0 {
			return apiError(409, "replaced")
		}
		return nil
	}
	h.start()
	a := testAlloc(0, "u1", testNode)
	h.srv.put(a)
	id := taskID("u1", "main")
	h.eventually("running", h.clientStatusIs(a, api.ClientRunning))
	if err := h.drv.exit(id, driver.ExitResult{ExitCode: 1}); err != nil {
		t.Fatal(err)
	}
	h.advanceUntil("the task is stopped after the conflict", 100*time.Millisecond, func() bool {
		return len(h.drv.startsOf(id)) == 2 && !h.drv.running(id)
	})
	h.eventually("its state is removed", func() bool { return h.drv.destroyed(id) })
}

func TestAdmissionRejectsOverCommit(t *testing.T) {
	h := newHarness(t).start()
	memory := h.srv.node(testNode).Status.Allocatable.Memory
	if memory == 0 {
		t.Skip("memory capacity unknown on this machine")
	}
	first := testAlloc(0, "u1", testNode, withMemory(memory*6/10))
	second := testAlloc(1, "u2", testNode, withMemory(memory*6/10))
	h.srv.put(first)
	h.eventually("first runs", h.clientStatusIs(first, api.ClientRunning))
	h.srv.put(second)
	h.eventually("second is rejected", h.clientStatusIs(second, api.ClientFailed))
	if !h.hasEvent(second, EventRejected, "rejected by node: would over-commit memory (") {
		t.Errorf("events %+v", h.status(second).Events)
	}
	if n := len(h.drv.startsOf(taskID("u2", "main"))); n != 0 {
		t.Errorf("rejected allocation started %d times", n)
	}
}

func TestRecovery(t *testing.T) {
	h := newHarness(t)
	reattach := testAlloc(0, "u1", testNode, withTasks("main", "side"), withClientStatus(api.ClientRunning), func(a *api.Allocation) {
		a.Status.Tasks = map[string]api.TaskState{"main": {State: api.TaskRunning, Restarts: 3}}
	})
	stopped := testAlloc(1, "u3", testNode, withDesired(api.DesiredStop), withClientStatus(api.ClientRunning))
	finished := testAlloc(2, "u4", testNode, withBatch(), withClientStatus(api.ClientRunning))
	fresh := testAlloc(3, "u5", testNode)
	done := testAlloc(4, "u6", testNode, withBatch(), withClientStatus(api.ClientComplete))
	for _, a := range []*api.Allocation{reattach, stopped, finished, fresh, done} {
		h.srv.put(a)
	}
	h.drv.seed(taskID("u1", "main"), true, driver.ExitResult{})
	h.drv.seed(taskID("u2", "main"), true, driver.ExitResult{}) // orphan: not listed
	h.drv.seed(taskID("u3", "main"), true, driver.ExitResult{}) // wanted stopped
	h.drv.seed(taskID("u4", "main"), false, driver.ExitResult{})
	h.drv.seed(taskID("u6", "main"), false, driver.ExitResult{}) // reported complete already
	h.drv.seed(taskID("u1", "gone"), true, driver.ExitResult{})  // task no longer in the group
	h.start()

	h.eventually("u1 reports both tasks running", func() bool {
		st := h.status(reattach)
		return st.ClientStatus == api.ClientRunning && st.Tasks["side"].State == api.TaskRunning
	})
	st := h.status(reattach).Tasks["main"]
	if st.Restarts != 3 || st.PID == 0 {
		t.Errorf("re-attached task %+v, want restarts 3 carried over", st)
	}
	if n := len(h.drv.startsOf(taskID("u1", "main"))); n != 0 {
		t.Errorf("re-attached task started %d times", n)
	}
	if !h.hasEvent(reattach, EventReattached, "task main: re-attached") {
		t.Errorf("events %v", h.eventReasons(reattach))
	}
	h.eventually("u3 is reported complete", h.clientStatusIs(stopped, api.ClientComplete))
	h.eventually("u4's finished task completes the allocation", h.clientStatusIs(finished, api.ClientComplete))
	h.eventually("u5 runs", h.clientStatusIs(fresh, api.ClientRunning))
	for _, id := range []driver.TaskID{taskID("u2", "main"), taskID("u3", "main"), taskID("u6", "main"), taskID("u1", "gone")} {
		if len(h.drv.stopsOf(id)) != 1 || !h.drv.destroyed(id) {
			t.Errorf("%s: stops %v, destroyed %v; want stopped and destroyed", id, h.drv.stopsOf(id), h.drv.destroyed(id))
		}
	}
	if got := h.status(done).ClientStatus; got != api.ClientComplete || len(h.drv.startsOf(taskID("u6", "main"))) != 0 {
		t.Errorf("u6 %q, started %d times", got, len(h.drv.startsOf(taskID("u6", "main"))))
	}
	// Recovery finishes before anything new starts.
	calls := h.drv.callLog()
	firstStart := indexOf(calls, "start u5/main")
	for _, c := range []string{"destroy u2/main", "destroy u3/main", "destroy u1/gone"} {
		if i := indexOf(calls, c); i < 0 || i > firstStart {
			t.Errorf("calls %v: %q must come before the first start", calls, c)
		}
	}
	if h.drv.duplicateStarts() != 0 {
		t.Errorf("%d duplicate starts", h.drv.duplicateStarts())
	}
}

func TestAgentRestartKeepsTasks(t *testing.T) {
	h := newHarness(t).start()
	a := testAlloc(0, "u1", testNode)
	h.srv.put(a)
	id := taskID("u1", "main")
	h.eventually("running", h.clientStatusIs(a, api.ClientRunning))
	if err := h.drv.exit(id, driver.ExitResult{ExitCode: 1}); err != nil {
		t.Fatal(err)
	}
	h.advanceUntil("restarted once", 100*time.Millisecond, func() bool { return h.status(a).Tasks["main"].Restarts == 1 && h.drv.running(id) })
	pid := h.status(a).Tasks["main"].PID
	firstAgent := h.srv.node(testNode).Status.AgentID
	calls := len(h.drv.callLog())
	h.stop()
	if !h.drv.running(id) || len(h.drv.callLog()) != calls {
		t.Fatalf("the task did not survive the agent: %v", h.drv.callLog())
	}

	h.start() // a new agent process on the same driver
	h.eventually("the new agent re-attached", func() bool { return h.hasEvent(a, EventReattached, "task main") })
	st := h.status(a).Tasks["main"]
	if st.PID != pid || st.Restarts != 1 || h.drv.duplicateStarts() != 0 || len(h.drv.startsOf(id)) != 2 {
		t.Errorf("after agent restart: %+v (pid was %d), %d starts, %d duplicates", st, pid, len(h.drv.startsOf(id)), h.drv.duplicateStarts())
	}
	if h.srv.node(testNode).Status.AgentID == firstAgent {
		t.Errorf("agent ID did not change")
	}
	if err := h.drv.exit(id, driver.ExitResult{ExitCode: 1}); err != nil {
		t.Fatal(err)
	}
	h.advanceUntil("restarted by the new agent", 100*time.Millisecond, func() bool { return h.status(a).Tasks["main"].Restarts == 2 && h.drv.running(id) })
}

func TestShutdownStopsTasks(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.StopTasksOnShutdown = true }).start()
	a := testAlloc(0, "u1", testNode)
	h.srv.put(a)
	id := taskID("u1", "main")
	h.eventually("running", h.clientStatusIs(a, api.ClientRunning))
	h.stop()
	if h.drv.running(id) || !h.drv.destroyed(id) {
		t.Errorf("task still running or not destroyed after shutdown")
	}
	st := h.status(a)
	if st.ClientStatus != api.ClientPending || st.Tasks["main"].State != api.TaskDead || st.Tasks["main"].Message != "stopped: agent shut down" {
		t.Errorf("reported %+v", st)
	}

	// The next agent starts it again.
	h.cfg.StopTasksOnShutdown = false
	h.start()
	h.eventually("started again", func() bool { return h.drv.running(id) })
}

func TestWatchResumes(t *testing.T) {
	h := newHarness(t).start()
	a := testAlloc(0, "u1", testNode)
	h.srv.put(a)
	h.eventually("running", h.clientStatusIs(a, api.ClientRunning))

	rv := h.srv.bookmark()
	h.eventually("the bookmark is read", func() bool { return h.srv.streamsAt(mustAtoi(rv)) })
	h.srv.dropStreams()
	h.advanceUntil("the watch resumes", 100*time.Millisecond, func() bool { return len(h.srv.watches()) == 2 })
	if got := h.srv.watches()[1]; mustAtoi(got) < mustAtoi(rv) {
		t.Errorf("resumed from %s, want at least the bookmark's %s", got, rv)
	}
	b := testAlloc(1, "u2", testNode)
	h.srv.put(b)
	h.eventually("u2 runs", h.clientStatusIs(b, api.ClientRunning))

	// Too old: list again. The allocation removed meanwhile must stop.
	h.srv.mu.Lock()
	delete(h.srv.allocs, allocKey(a)) // gone without an event the agent could see
	h.srv.mu.Unlock()
	h.srv.compact()
	h.srv.dropStreams()
	h.advanceUntil("u1 stops after the relist", 100*time.Millisecond, func() bool { return !h.drv.running(taskID("u1", "main")) })
	if !h.drv.running(taskID("u2", "main")) {
		t.Errorf("u2 stopped by the relist")
	}
}

func TestHeartbeats(t *testing.T) {
	h := newHarness(t).start()
	h.advanceUntil("heartbeats", 500*time.Millisecond, func() bool { _, n := h.srv.counts(); return n >= 2 })

	// The server forgot the node: 404 registers again.
	h.srv.mu.Lock()
	delete(h.srv.nodes, testNode)
	h.srv.mu.Unlock()
	h.advanceUntil("registered again after 404", 500*time.Millisecond, func() bool { r, _ := h.srv.counts(); return r == 2 })

	// The server was away: the first heartbeat that succeeds registers again.
	failed := 0
	h.srv.mu.Lock()
	h.srv.heartbeatHook = func() error { failed++; return api.ErrUnreachable }
	h.srv.mu.Unlock()
	h.advanceUntil("heartbeats fail", 500*time.Millisecond, func() bool {
		h.srv.mu.Lock()
		defer h.srv.mu.Unlock()
		return failed >= 3
	})
	h.srv.mu.Lock()
	h.srv.heartbeatHook = nil
	h.srv.mu.Unlock()
	h.advanceUntil("registered again after reconnecting", 500*time.Millisecond, func() bool { r, _ := h.srv.counts(); return r == 3 })
}

func TestRegisterWaitsForServer(t *testing.T) {
	h := newHarness(t)
	failures := 3
	h.srv.registerHook = func() error {
		if failures > 0 {
			failures--
			return api.ErrUnreachable
		}
		return nil
	}
	h.run()
	h.advanceUntil("registered", 250*time.Millisecond, func() bool { r, _ := h.srv.counts(); return r == 1 })
}

func TestGarbageCollectsStaleDirectories(t *testing.T) {
	h := newHarness(t)
	stale := filepath.Join(h.cfg.DataDir, "allocs", "old-uid", "main", "logs")
	kept := filepath.Join(h.cfg.DataDir, "allocs", "u1", "main", "logs")
	for _, d := range []string{stale, kept} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.srv.put(testAlloc(0, "u1", testNode, withBatch(), withClientStatus(api.ClientComplete)))
	h.start()
	h.eventually("the stale directory is removed", func() bool {
		_, err := os.Stat(stale)
		return os.IsNotExist(err)
	})
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("logs of a listed complete allocation: %v", err)
	}
	h.srv.remove(api.DefaultNamespace + "/" + api.AllocName("web", "web", 0))
	h.advanceUntil("the departed allocation's directory is collected", 10*time.Second, func() bool {
		_, err := os.Stat(kept)
		return os.IsNotExist(err)
	})
}

func TestNewChecksConfig(t *testing.T) {
	srv := newFakeServer()
	drv := newFakeDriver("exec", nil)
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Name: "n1", DataDir: "/tmp/x"}, "Client is required"},
		{Config{Server: srv, Name: "N_1", DataDir: "/tmp/x"}, `node name "N_1"`},
		{Config{Server: srv, Name: "n1"}, "DataDir is required"},
		{Config{Server: srv, Name: "n1", DataDir: "/tmp/x", HeartbeatInterval: -1}, "HeartbeatInterval"},
		{Config{Server: srv, Name: "n1", DataDir: "/tmp/x", Reserved: api.Resources{Memory: -1}}, "Reserved.Memory"},
		{Config{Server: srv, Name: "n1", DataDir: "/tmp/x", Reserved: api.Resources{Ports: []api.Port{{Port: 70000}}}}, "Reserved.Ports[0]"},
		{Config{Server: srv, Name: "n1", DataDir: "/tmp/x", Drivers: []driver.Driver{drv, drv}}, `duplicate driver "exec"`},
		{Config{Server: srv, Name: "n1", DataDir: "/tmp/x", Listen: "256.0.0.1:x"}, "listen on"},
	} {
		_, err := New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error about %s", tt.cfg, err, tt.want)
		}
	}
}
