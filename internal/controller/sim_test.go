package controller

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// sim drives the three controllers pass by pass on a fake registry and a
// fake clock, with a stand-in scheduler and agents, so that a whole story
// plays out deterministically in one goroutine.
type sim struct {
	t     *testing.T
	clock *clockwork.FakeClock
	reg   *fakeRegistry
	loops []*loop
	// controllerCommits counts the commits the controllers made.
	controllerCommits int
}

func newSim(t *testing.T) *sim {
	clock := clockwork.NewFakeClockAt(t0)
	reg := newFakeRegistry(clock)
	cfg := Config{Registry: reg, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &sim{t: t, clock: clock, reg: reg}
	s.loops = []*loop{
		newLoop(cfg, m, newNodeController(cfg)),
		newLoop(cfg, m, newJobController(cfg)),
		newLoop(cfg, m, newGarbageCollector(cfg)),
	}
	return s
}

// settle runs controller passes until none writes anything.
func (s *sim) settle() {
	s.t.Helper()
	for range 20 {
		before := s.reg.commitCount()
		for _, l := range s.loops {
			if _, err := l.pass(context.Background()); err != nil {
				s.t.Fatalf("%s controller: %v", l.r.name(), err)
			}
		}
		done := s.reg.commitCount() - before
		s.controllerCommits += done
		if done == 0 {
			return
		}
	}
	s.t.Fatal("the controllers do not settle")
}

// advance moves the clock in steps of a second; the listed nodes heartbeat
// at every step and the controllers settle.
func (s *sim) advance(d time.Duration, heartbeating ...string) {
	s.t.Helper()
	for step := time.Duration(0); step < d; step += time.Second {
		s.clock.Advance(time.Second)
		s.heartbeat(heartbeating...)
		s.settle()
	}
}

func (s *sim) heartbeat(nodes ...string) {
	for _, n := range nodes {
		s.reg.mustCommit(s.t, registry.PutHeartbeat(n, registry.Heartbeat{AgentID: n + "-agent", Time: s.clock.Now()}))
	}
}

func (s *sim) addNode(name string) {
	s.reg.mustCommit(s.t, registry.Upsert(newNode(name, api.NodeReady, api.Active)))
	s.heartbeat(name)
}

// schedule places every unplaced allocation that is due on node, in one
// commit, as the scheduler does.
func (s *sim) schedule(node string) {
	var ops []registry.Op
	for _, key := range sortedKeys(s.reg.Snapshot().Allocs) {
		a := s.reg.Snapshot().Allocs[key]
		if a.Spec.Node == "" && a.Spec.DesiredStatus == api.DesiredRun && !a.Status.ClientStatus.Terminal() &&
			!s.clock.Now().Before(a.Spec.NotBefore) {
			c := *a
			c.Spec.Node = node
			ops = append(ops, registry.Update(&c))
		}
	}
	if len(ops) > 0 {
		s.reg.mustCommit(s.t, ops...)
	}
}

// agent reports, one allocation per commit, what node's agent would: its
// pending allocations run, those asked to stop complete. The controllers
// see every report on its own, as the worst case of timing.
func (s *sim) agent(node string) {
	for _, key := range sortedKeys(s.reg.Snapshot().Allocs) {
		a := s.reg.Snapshot().Allocs[key]
		if a.Spec.Node != node || a.Status.ClientStatus.Terminal() {
			continue
		}
		c := *a
		switch {
		case a.Spec.DesiredStatus == api.DesiredStop:
			c.Status.ClientStatus = api.ClientComplete
		case a.Status.ClientStatus != api.ClientRunning:
			c.Status.ClientStatus = api.ClientRunning
		default:
			continue
		}
		c.Status.UpdatedAt = s.clock.Now()
		s.reg.mustCommit(s.t, registry.Update(&c))
		s.settle()
	}
}

// cycle lets the scheduler and node's agent act, then the controllers.
func (s *sim) cycle(node string) {
	s.schedule(node)
	s.agent(node)
	s.settle()
}

func (s *sim) job(name string) *api.Job {
	return s.reg.Snapshot().Jobs[registry.Key(api.DefaultNamespace, name)]
}

func (s *sim) putJob(j *api.Job) {
	if cur := s.job(j.Name); cur != nil {
		j.UID, j.ResourceVersion, j.Status = cur.UID, cur.ResourceVersion, cur.Status
		s.reg.mustCommit(s.t, registry.Update(j))
		return
	}
	j.UID, j.ResourceVersion = "", ""
	s.reg.mustCommit(s.t, registry.Create(j))
}

func TestSimulationNodeDown(t *testing.T) {
	s := newSim(t)
	s.addNode("n1")
	s.addNode("n2")
	s.putJob(newJob("web", api.JobService, 2))
	s.settle()
	if got := s.reg.allocNames(); len(got) != 2 {
		t.Fatalf("allocations %v, want 2", got)
	}
	s.cycle("n1")
	if p := s.job("web").Status.Phase; p != api.JobRunning {
		t.Fatalf("job phase %s, want running", p)
	}
	before := map[string]string{}
	for _, name := range s.reg.allocNames() {
		before[name] = s.reg.alloc(name).UID
	}

	// n1 falls silent; n2 keeps heartbeating.
	s.advance(4*time.Second, "n2")
	if st := s.reg.Snapshot().Nodes["n1"].Status.Status; st != api.NodeReady {
		t.Fatalf("n1 is %s within the grace period", st)
	}
	s.advance(time.Second, "n2")
	n1 := s.reg.Snapshot().Nodes["n1"]
	if n1.Status.Status != api.NodeDown || n1.Status.Message != "no heartbeat for 5s" {
		t.Fatalf("n1 status = %+v", n1.Status)
	}
	for name, uid := range before {
		a := s.reg.alloc(name)
		if a.UID == uid || a.Spec.Node != "" || a.Spec.PreviousNode != "n1" || a.Spec.Attempt != 1 ||
			a.Status.ClientStatus != api.ClientPending || !a.Spec.NotBefore.IsZero() {
			t.Errorf("%s was not replaced: %+v %+v", name, a.Spec, a.Status)
		}
		if evs := a.Status.Events; len(evs) != 2 || evs[0].Reason != "NodeDown" || evs[1].Reason != "Replaced" {
			t.Errorf("%s events = %+v", name, evs)
		}
	}
	s.cycle("n2")
	if p := s.job("web").Status.Phase; p != api.JobRunning {
		t.Fatalf("job phase %s after the move, want running", p)
	}

	// n1 comes back.
	s.heartbeat("n1")
	s.settle()
	if st := s.reg.Snapshot().Nodes["n1"].Status; st.Status != api.NodeReady || st.Message != "" {
		t.Fatalf("n1 after heartbeats = %+v", st)
	}
	reasons := map[string]int{}
	for _, r := range s.reg.eventReasons() {
		reasons[r]++
	}
	if reasons["NodeDown"] != 1 || reasons["NodeReady"] != 1 || reasons["Replaced"] != 2 {
		t.Errorf("events by reason: %v", reasons)
	}
}

// TestSimulationStoreRequests plays "create 3, scale to 10, scale to 5,
// delete" and counts the controllers' commits, each one store request.
func TestSimulationStoreRequests(t *testing.T) {
	s := newSim(t)
	s.addNode("n1")
	s.settle()
	web := newJob("web", api.JobService, 3)
	s.putJob(web)
	s.settle()
	s.cycle("n1")
	s.putJob(withCount(s.job("web"), 10))
	s.settle()
	s.cycle("n1")
	if sum := s.job("web").Status.Groups["g"]; sum.Running != 10 {
		t.Fatalf("after scaling to 10: %+v", sum)
	}
	s.putJob(withCount(s.job("web"), 5))
	s.settle()
	s.cycle("n1")
	if sum := s.job("web").Status.Groups["g"]; sum.Running != 5 || sum.Complete != 5 {
		t.Fatalf("after scaling to 5: %+v", sum)
	}
	s.advance(time.Minute+2*time.Second, "n1")
	if got := s.reg.allocNames(); len(got) != 5 {
		t.Fatalf("after the retention: allocations %v, want 5", got)
	}
	if sum := s.job("web").Status.Groups["g"]; sum.Running != 5 || sum.Complete != 0 {
		t.Fatalf("after the retention: %+v", sum)
	}
	job := s.job("web")
	s.reg.mustCommit(t, registry.Delete(registry.Jobs, job.Namespace, job.Name, job.ResourceVersion))
	s.settle()
	s.cycle("n1")
	if got := s.reg.allocNames(); len(got) != 0 {
		t.Fatalf("after the delete: allocations %v", got)
	}
	// 60 heartbeat-only seconds cost nothing; the story itself is a few
	// dozen commits.
	t.Logf("controller commits: %d; all commits: %d", s.controllerCommits, s.reg.commitCount())
	if s.controllerCommits > 40 {
		t.Errorf("the controllers made %d commits, want at most 40", s.controllerCommits)
	}
}

func TestSimulationBatchJob(t *testing.T) {
	s := newSim(t)
	s.addNode("n1")
	s.putJob(newJob("b", api.JobBatch, 2))
	s.settle()
	s.cycle("n1")
	for i, st := range []api.ClientStatus{api.ClientComplete, api.ClientFailed} {
		a := *s.reg.alloc(api.AllocName("b", "g", i))
		a.Status.ClientStatus = st
		s.reg.mustCommit(t, registry.Update(&a))
	}
	s.settle()
	job := s.job("b")
	if job.Status.Phase != api.JobFailed || job.Status.Message != "allocation b.g[1] failed" {
		t.Fatalf("status = %+v", job.Status)
	}
	// A fixed spec replaces the failed allocation; the completed one stays.
	s.putJob(withArgs(job, "1"))
	s.settle()
	if a := s.reg.alloc("b.g[1]"); a.Status.ClientStatus != api.ClientPending {
		t.Fatalf("b.g[1] = %+v", a.Status)
	}
	if a := s.reg.alloc("b.g[0]"); a.Status.ClientStatus != api.ClientComplete {
		t.Fatalf("b.g[0] = %+v", a.Status)
	}
	s.cycle("n1")
	a := *s.reg.alloc("b.g[1]")
	a.Status.ClientStatus = api.ClientComplete
	s.reg.mustCommit(t, registry.Update(&a))
	s.settle()
	if p := s.job("b").Status.Phase; p != api.JobComplete {
		t.Fatalf("phase = %s, want complete", p)
	}
}

func TestSimulationEventsExpire(t *testing.T) {
	s := newSim(t)
	s.addNode("n1")
	s.putJob(newJob("web", api.JobService, 1))
	s.settle()
	if len(s.reg.EventNames()) == 0 {
		t.Fatal("no events recorded")
	}
	// Heartbeat every second for an hour and a minute, in big steps.
	for range 61 {
		s.clock.Advance(time.Minute)
		s.heartbeat("n1")
		s.settle()
	}
	if names := s.reg.EventNames(); len(names) != 0 {
		t.Fatalf("events left after an hour: %v", names)
	}
}
