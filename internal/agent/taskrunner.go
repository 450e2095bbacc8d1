package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"sync"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

// stopGrace is how long after a kill timeout the agent still waits for the
// driver to report the exit before giving up on it.
const stopGrace = 5 * time.Second

// taskRunner runs one task: start, wait, restart per the restart policy,
// and kill on request.
type taskRunner struct {
	ar      *allocRunner
	task    api.Task
	drv     driver.Driver
	id      driver.TaskID
	req     driver.StartRequest
	tracker restartTracker
	// recovered is the task of an earlier agent process to re-attach to.
	recovered *driver.Handle

	kill     chan struct{}
	killOnce sync.Once
	// running is whether the running-tasks gauge counts this task; only
	// the run goroutine touches it.
	running bool
}

func (tr *taskRunner) requestKill() { tr.killOnce.Do(func() { close(tr.kill) }) }

func (tr *taskRunner) killed() bool { return isClosed(tr.kill) }

func (tr *taskRunner) name() string { return tr.task.Name }

func (tr *taskRunner) now() time.Time { return tr.ar.h.clock.Now() }

func (tr *taskRunner) killTimeout() time.Duration {
	if tr.task.KillTimeout > 0 {
		return tr.task.KillTimeout.Std()
	}
	return api.DefaultKillTimeout.Std()
}

// run is the task's life in this incarnation. It returns when the task ended
// for good, was killed, or ctx ended (the agent abandons the task, which
// keeps running for the next agent to recover).
func (tr *taskRunner) run(ctx context.Context) {
	defer tr.setRunning(false)
	attached := tr.recovered != nil
	if attached {
		h := tr.recovered
		tr.ar.update(tr.name(), func(rec *taskRecord) {
			rec.started = true
			rec.state.State = api.TaskRunning
			rec.state.PID = h.PID
			rec.state.StartedAt = h.StartedAt
			rec.state.Message = ""
		}, tr.ar.taskEvent(api.EventNormal, EventReattached, tr.name(), "re-attached after agent restart (pid %d)", h.PID))
		tr.setRunning(true)
		tr.recordPorts(ctx)
	}
	if tr.drv == nil {
		tr.endForGood(exitDecision{Failed: true, Reason: fmt.Sprintf("driver %q is not available", tr.task.Driver)})
		return
	}
	restarting := false
	for {
		var res driver.ExitResult
		started := attached
		if !attached {
			if tr.killed() {
				tr.endKilled("stopped before it started")
				return
			}
			err := tr.start(ctx, restarting)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				res = driver.ExitResult{Err: err, FinishedAt: tr.now()}
			} else {
				started = true
			}
		}
		attached = false
		if started {
			var ok bool
			if res, ok = tr.wait(ctx); !ok {
				return
			}
		}
		tr.setRunning(false)
		if tr.killed() {
			tr.recordExit(res, started)
			tr.endKilled("")
			return
		}
		decision := tr.tracker.onExit(res, tr.now())
		tr.recordExit(res, started)
		if !decision.Restart {
			tr.endForGood(decision)
			return
		}
		tr.ar.update(tr.name(), func(rec *taskRecord) {
			rec.state.State = api.TaskPending
		}, tr.ar.taskEvent(api.EventNormal, EventRestarting, tr.name(), "%s", decision.Reason))
		select {
		case <-tr.ar.h.clock.After(decision.Delay):
		case <-tr.kill:
			tr.endKilled("restart cancelled")
			return
		case <-ctx.Done():
			return
		}
		if err := tr.drv.Destroy(ctx, tr.id); err != nil && !errors.Is(err, driver.ErrNotFound) && ctx.Err() == nil {
			tr.ar.h.log.Warn("removing the exited task's state before its restart failed", "task", tr.id.String(), "err", err)
		}
		restarting = true
	}
}

// start starts the task; a restart counts in the task's restarts.
func (tr *taskRunner) start(ctx context.Context, restart bool) error {
	if restart {
		tr.ar.h.metrics.restarts.Inc()
		tr.ar.update(tr.name(), func(rec *taskRecord) { rec.state.Restarts++ })
	}
	if err := os.MkdirAll(tr.req.LogDir, 0o755); err != nil {
		return fmt.Errorf("creating task directory: %w", err)
	}
	h, err := tr.drv.Start(ctx, tr.req)
	if err != nil {
		return err
	}
	tr.ar.h.metrics.starts.Inc()
	tr.setRunning(true)
	startedAt := h.StartedAt
	if startedAt.IsZero() {
		startedAt = tr.now()
	}
	tr.ar.update(tr.name(), func(rec *taskRecord) {
		rec.started = true
		rec.state.State = api.TaskRunning
		rec.state.PID = h.PID
		rec.state.StartedAt = startedAt
		rec.state.FinishedAt = time.Time{}
		rec.state.ExitCode, rec.state.Signal, rec.state.Message = nil, "", ""
		rec.state.Ports = nil
	}, tr.ar.taskEvent(api.EventNormal, EventStarted, tr.name(), "started (pid %d)", h.PID))
	tr.recordPorts(ctx)
	return nil
}

// recordPorts asks a driver that publishes ports for the task's host ports
// and records them. Without them the task still runs, so a failure is only
// logged.
func (tr *taskRunner) recordPorts(ctx context.Context) {
	pr, ok := tr.drv.(driver.PortReporter)
	if !ok {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	ports, err := pr.Ports(pctx, tr.id)
	if err != nil {
		if ctx.Err() == nil {
			tr.ar.h.log.Warn("reading the task's host ports failed; its status shows none", "task", tr.id.String(), "err", err)
		}
		return
	}
	if len(ports) == 0 {
		ports = nil
	}
	tr.ar.update(tr.name(), func(rec *taskRecord) { rec.state.Ports = maps.Clone(ports) })
}

// wait waits for the task to exit or for a kill request. It returns false
// when ctx ended first.
func (tr *taskRunner) wait(ctx context.Context) (driver.ExitResult, bool) {
	ch, err := tr.drv.Wait(ctx, tr.id)
	if err != nil {
		if ctx.Err() != nil {
			return driver.ExitResult{}, false
		}
		return driver.ExitResult{Err: fmt.Errorf("waiting for the task: %w", err), FinishedAt: tr.now()}, true
	}
	select {
	case res, ok := <-ch:
		return tr.received(ctx, res, ok)
	case <-tr.kill:
	case <-ctx.Done():
		return driver.ExitResult{}, false
	}
	// Kill requested: SIGTERM, SIGKILL after the kill timeout; Stop
	// returns once the task exited.
	if err := tr.drv.Stop(ctx, tr.id, tr.killTimeout()); err != nil {
		if ctx.Err() != nil {
			return driver.ExitResult{}, false
		}
		if errors.Is(err, driver.ErrNotFound) {
			return driver.ExitResult{Err: errors.New("the driver no longer knows the task"), FinishedAt: tr.now()}, true
		}
		tr.ar.h.log.Warn("stopping task failed", "task", tr.id.String(), "err", err)
		return driver.ExitResult{Err: fmt.Errorf("stopping the task: %w", err), FinishedAt: tr.now()}, true
	}
	select {
	case res, ok := <-ch:
		return tr.received(ctx, res, ok)
	case <-ctx.Done():
		return driver.ExitResult{}, false
	case <-tr.ar.h.clock.After(tr.killTimeout() + stopGrace):
		return driver.ExitResult{Err: errors.New("the driver stopped the task but reported no exit"), FinishedAt: tr.now()}, true
	}
}

// received interprets a receive from a Wait channel. A driver may close
// the channel without a value when the wait's context ends (the agent is
// abandoning the task) or when it stops watching (the exit is unknown).
func (tr *taskRunner) received(ctx context.Context, res driver.ExitResult, ok bool) (driver.ExitResult, bool) {
	switch {
	case ok:
		return res, true
	case ctx.Err() != nil:
		return driver.ExitResult{}, false
	}
	return driver.ExitResult{Err: errors.New("the driver stopped watching the task"), FinishedAt: tr.now()}, true
}

// recordExit records how the task ended (or failed to start).
func (tr *taskRunner) recordExit(res driver.ExitResult, started bool) {
	now := tr.now()
	if !started {
		msg := fmt.Sprintf("failed to start: %v", res.Err)
		tr.ar.update(tr.name(), func(rec *taskRecord) {
			rec.state.State = api.TaskDead
			rec.state.PID = 0
			rec.state.FinishedAt = now
			rec.state.Message = msg
		}, tr.ar.taskEvent(api.EventWarning, EventDriverFailure, tr.name(), "%s", msg))
		return
	}
	reason, msg := describeExit(res)
	typ := api.EventNormal
	if !res.Successful() && !tr.killed() {
		typ = api.EventWarning
	}
	if tr.killed() {
		reason = EventKilled
	}
	tr.ar.update(tr.name(), func(rec *taskRecord) {
		rec.state = exitState(rec.state, res, now)
		rec.state.State = api.TaskDead
	}, tr.ar.taskEvent(typ, reason, tr.name(), "%s", msg))
}

// endForGood records that the task will not run again.
func (tr *taskRunner) endForGood(d exitDecision) {
	var events []api.Event
	if d.Failed {
		events = append(events, tr.ar.taskEvent(api.EventWarning, EventNotRestarting, tr.name(), "%s", d.Reason))
	}
	tr.ar.update(tr.name(), func(rec *taskRecord) {
		rec.done = true
		rec.state.State = api.TaskDead
		rec.state.Failed = d.Failed
		if d.Failed {
			rec.state.Message = d.Reason
		}
	}, events...)
}

// endKilled records that the task was stopped on request.
func (tr *taskRunner) endKilled(why string) {
	ar := tr.ar
	ar.mu.Lock()
	shutdown := ar.shutdown
	ar.mu.Unlock()
	var events []api.Event
	if why != "" {
		events = append(events, ar.taskEvent(api.EventNormal, EventKilled, tr.name(), "%s", why))
	}
	ar.update(tr.name(), func(rec *taskRecord) {
		rec.done = true
		rec.interrupted = shutdown
		rec.state.State = api.TaskDead
		rec.state.Failed = false
		rec.state.PID = 0
		if why != "" {
			rec.state.Message = why
		}
		if shutdown {
			rec.state.Message = "stopped: agent shut down"
		}
	}, events...)
}

// setRunning keeps the running-tasks gauge.
func (tr *taskRunner) setRunning(running bool) {
	if running == tr.running {
		return
	}
	tr.running = running
	if running {
		tr.ar.h.metrics.running.Inc()
	} else {
		tr.ar.h.metrics.running.Dec()
	}
}
