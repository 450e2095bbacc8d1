package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

// cleanupTimeout bounds the driver calls that clean up after tasks.
const cleanupTimeout = 30 * time.Second

// host is what allocation and task runners share with the agent.
type host struct {
	node     string
	dataDir  string
	clock    clockwork.Clock
	log      *slog.Logger
	drivers  map[string]driver.Driver
	reporter *reporter
	metrics  *metrics
	// wake asks the agent's loop to reconcile again.
	wake func()
	// goAsync runs f on a goroutine the agent waits for at shutdown.
	goAsync func(f func())
}

func allocDir(dataDir, uid string) string { return filepath.Join(dataDir, "allocs", uid) }

func taskDir(dataDir, uid, task string) string { return filepath.Join(allocDir(dataDir, uid), task) }

func taskLogDir(dataDir, uid, task string) string {
	return filepath.Join(taskDir(dataDir, uid, task), "logs")
}

// allocRunner runs the tasks of one allocation incarnation, derives its
// client status and reports it.
type allocRunner struct {
	h         *host
	alloc     *api.Allocation
	resources api.Resources
	tasks     []*taskRunner
	done      chan struct{} // closed when no task can run any more

	mu      sync.Mutex
	records map[string]*taskRecord
	events  []api.Event
	// fixed is the client status of a runner without tasks (rejected, or
	// wanted stopped with nothing running).
	fixed api.ClientStatus
	// stopping: a stop was requested. silent: the incarnation is not ours
	// any more, so nothing is reported. shutdown: the agent stops it on its
	// way out. detached: the server refused a report (replaced).
	stopping, silent, shutdown, detached bool
	// failing: a task failed for good and the others were told to stop.
	failing bool
	// ackedTerminal: the server recorded a terminal status, so the driver
	// state can go (a new agent will not run the incarnation again).
	ackedTerminal bool
	destroyOnce   sync.Once
}

// recoveredTask is a task found by a driver's Recover.
type recoveredTask struct {
	handle *driver.Handle
	driver driver.Driver
}

// newAllocRunner prepares the tasks of a; recovered holds the tasks of an
// earlier agent process to re-attach to, by task name.
func newAllocRunner(h *host, a *api.Allocation, recovered map[string]recoveredTask) *allocRunner {
	ar := &allocRunner{
		h:         h,
		alloc:     a,
		resources: a.Spec.GroupSpec.GroupResources(),
		done:      make(chan struct{}),
		records:   map[string]*taskRecord{},
		events:    append([]api.Event(nil), a.Status.Events...),
	}
	for _, t := range a.Spec.GroupSpec.Tasks {
		prev := a.Status.Tasks[t.Name]
		rec := &taskRecord{state: api.TaskState{State: api.TaskPending, Restarts: prev.Restarts}}
		ar.records[t.Name] = rec
		tr := &taskRunner{
			ar:      ar,
			task:    t,
			drv:     h.drivers[t.Driver],
			id:      driver.TaskID{AllocUID: a.UID, Task: t.Name},
			tracker: newRestartTracker(a.Spec.GroupSpec.RestartPolicy, a.Spec.JobType),
			kill:    make(chan struct{}),
		}
		if rt, ok := recovered[t.Name]; ok {
			tr.recovered = rt.handle
			tr.drv = rt.driver
		}
		tr.req = ar.startRequest(t)
		ar.tasks = append(ar.tasks, tr)
	}
	return ar
}

// newFinishedRunner holds an incarnation that runs nothing here: rejected
// (failed) or wanted stopped with no tasks left (complete). It reports
// status once.
func newFinishedRunner(h *host, a *api.Allocation, status api.ClientStatus, ev api.Event) *allocRunner {
	ar := &allocRunner{
		h:       h,
		alloc:   a,
		done:    make(chan struct{}),
		records: map[string]*taskRecord{},
		events:  append([]api.Event(nil), a.Status.Events...),
		fixed:   status,
	}
	close(ar.done)
	ar.mu.Lock()
	defer ar.mu.Unlock()
	ar.events = appendEvent(ar.events, ev)
	ar.publishLocked()
	return ar
}

func (ar *allocRunner) startRequest(t api.Task) driver.StartRequest {
	a := ar.alloc
	dir := taskDir(ar.h.dataDir, a.UID, t.Name)
	return driver.StartRequest{
		ID:        driver.TaskID{AllocUID: a.UID, Task: t.Name},
		Namespace: a.Namespace,
		AllocName: a.Name,
		Task:      t,
		Dir:       dir,
		LogDir:    taskLogDir(ar.h.dataDir, a.UID, t.Name),
		Env: map[string]string{
			"HERD_ALLOC_NAME":  a.Name,
			"HERD_ALLOC_UID":   a.UID,
			"HERD_ALLOC_INDEX": strconv.Itoa(a.Spec.Index),
			"HERD_JOB":         a.Spec.Job,
			"HERD_GROUP":       a.Spec.Group,
			"HERD_TASK":        t.Name,
			"HERD_NAMESPACE":   a.Namespace,
			"HERD_NODE":        ar.h.node,
			"HERD_TASK_DIR":    dir,
		},
	}
}

// start runs every task on its own goroutine; ctx ends when the agent
// abandons its tasks (shutdown without stopping them).
func (ar *allocRunner) start(ctx context.Context) {
	var wg sync.WaitGroup
	for _, tr := range ar.tasks {
		wg.Go(func() { tr.run(ctx) })
	}
	ar.h.goAsync(func() {
		wg.Wait()
		close(ar.done)
		ar.maybeDestroy()
		ar.h.wake()
	})
}

// view summarises the runner for reconcile.
func (ar *allocRunner) view() runnerView {
	ar.mu.Lock()
	defer ar.mu.Unlock()
	return runnerView{
		UID:       ar.alloc.UID,
		Resources: ar.resources,
		Active:    !isClosed(ar.done),
		Stopping:  ar.stopping,
		Detached:  ar.detached,
	}
}

// stop kills the tasks. With report, the allocation is still ours and is
// reported complete once stopped; without, nothing more is reported.
func (ar *allocRunner) stop(reason string, report bool) {
	ar.mu.Lock()
	if !report {
		ar.silent = true
	}
	if ar.stopping {
		ar.mu.Unlock()
		return
	}
	ar.stopping = true
	ar.events = appendEvent(ar.events, ar.event(api.EventNormal, EventKilling, "stopping tasks: "+reason))
	ar.publishLocked()
	ar.mu.Unlock()
	ar.killTasks()
}

// stopForShutdown kills the tasks because the agent is shutting down; they
// are reported pending so that the next agent starts them again.
func (ar *allocRunner) stopForShutdown() {
	ar.mu.Lock()
	if ar.stopping {
		ar.mu.Unlock()
		return // a stop the control plane asked for is under way
	}
	ar.shutdown = true
	ar.stopping = true
	ar.mu.Unlock()
	ar.killTasks()
}

func (ar *allocRunner) killTasks() {
	for _, tr := range ar.tasks {
		tr.requestKill()
	}
}

// detach marks the incarnation as no longer ours; the agent's next pass
// stops it without reporting.
func (ar *allocRunner) detach() {
	ar.mu.Lock()
	ar.detached, ar.silent = true, true
	ar.mu.Unlock()
	ar.maybeDestroy()
	ar.h.wake()
}

func (ar *allocRunner) reportAcked(status api.AllocStatus) {
	if !status.ClientStatus.Terminal() {
		return
	}
	ar.mu.Lock()
	ar.ackedTerminal = true
	ar.mu.Unlock()
	ar.maybeDestroy()
}

func (ar *allocRunner) reportRefused(error) { ar.detach() }

// maybeDestroy removes the driver state of the tasks once none runs and no
// later agent could need it: the server knows the incarnation is over, it
// is not ours any more, or the agent stopped it on shutdown.
func (ar *allocRunner) maybeDestroy() {
	ar.mu.Lock()
	ready := isClosed(ar.done) && (ar.ackedTerminal || ar.silent || ar.shutdown)
	ar.mu.Unlock()
	if ready {
		ar.h.goAsync(func() { ar.destroy() })
	}
}

// destroy removes the driver state of every task, once.
func (ar *allocRunner) destroy() {
	ar.destroyOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		for _, tr := range ar.tasks {
			if tr.drv == nil {
				continue
			}
			if err := tr.drv.Destroy(ctx, tr.id); err != nil && !errors.Is(err, driver.ErrNotFound) {
				ar.h.log.Warn("removing task state failed", "task", tr.id.String(), "err", err)
			}
		}
	})
}

// forget destroys what is left of the incarnation, directories included.
func (ar *allocRunner) forget() {
	ar.destroy()
	if err := os.RemoveAll(allocDir(ar.h.dataDir, ar.alloc.UID)); err != nil {
		ar.h.log.Warn("removing allocation directory failed", "uid", ar.alloc.UID, "err", err)
	}
}

// update changes the record of a task and reports the allocation.
func (ar *allocRunner) update(task string, fn func(rec *taskRecord), events ...api.Event) {
	ar.mu.Lock()
	defer ar.mu.Unlock()
	if rec := ar.records[task]; rec != nil && fn != nil {
		fn(rec)
	}
	for _, ev := range events {
		ar.events = appendEvent(ar.events, ev)
	}
	ar.publishLocked()
}

// publishLocked derives the client status and submits a report. A task
// that failed for good fails the allocation: the other tasks are stopped.
func (ar *allocRunner) publishLocked() {
	status := ar.fixed
	if len(ar.tasks) > 0 {
		recs := make([]taskRecord, 0, len(ar.records))
		for _, r := range ar.records {
			recs = append(recs, *r)
		}
		status = clientStatus(recs)
	}
	if status == api.ClientFailed && !ar.failing && len(ar.tasks) > 0 {
		ar.failing = true
		for _, tr := range ar.tasks {
			tr.requestKill()
		}
	}
	if ar.silent {
		return
	}
	tasks := make(map[string]api.TaskState, len(ar.records))
	for name, r := range ar.records {
		tasks[name] = r.state
	}
	s := copyStatus(api.AllocStatus{ClientStatus: status, Tasks: tasks, Events: ar.events})
	ar.h.reporter.submit(statusReport{namespace: ar.alloc.Namespace, name: ar.alloc.Name, uid: ar.alloc.UID, status: s, target: ar})
}

// event builds an allocation event at the current time.
func (ar *allocRunner) event(typ api.EventType, reason, message string) api.Event {
	return api.Event{
		Time:      ar.h.clock.Now(),
		Type:      typ,
		Kind:      api.KindAllocation,
		Namespace: ar.alloc.Namespace,
		Name:      ar.alloc.Name,
		Reason:    reason,
		Message:   message,
		Source:    "agent/" + ar.h.node,
	}
}

// taskEvent builds an event about one task.
func (ar *allocRunner) taskEvent(typ api.EventType, reason, task, format string, args ...any) api.Event {
	return ar.event(typ, reason, "task "+task+": "+fmt.Sprintf(format, args...))
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
