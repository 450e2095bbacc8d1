package agent

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

// Reasons of the events the agent records on allocations.
const (
	EventStarted       = "Started"
	EventReattached    = "Reattached"
	EventTerminated    = "Terminated"
	EventOOMKilled     = "OOMKilled"
	EventTaskLost      = "TaskLost"
	EventRestarting    = "Restarting"
	EventNotRestarting = "NotRestarting"
	EventDriverFailure = "DriverFailure"
	EventKilling       = "Killing"
	EventKilled        = "Killed"
	EventRejected      = "Rejected"
)

// taskRecord is the agent's view of one task of an allocation.
type taskRecord struct {
	state api.TaskState
	// started says the task ran at least once in this incarnation.
	started bool
	// done says the task ended for good (state dead, no restart coming).
	done bool
	// interrupted says the task was killed because the agent shut down;
	// the next agent starts it again.
	interrupted bool
}

// clientStatus derives an allocation's client status from its tasks: failed
// as soon as one task failed for good; pending when the agent shut it down
// or not every task has started yet; complete when every task ended (by
// itself or on request); running otherwise.
func clientStatus(tasks []taskRecord) api.ClientStatus {
	allDone, allStarted, interrupted := true, true, false
	for _, t := range tasks {
		if t.done && t.state.Failed {
			return api.ClientFailed
		}
		allDone = allDone && t.done
		allStarted = allStarted && t.started
		interrupted = interrupted || t.interrupted
	}
	switch {
	case interrupted && allDone:
		return api.ClientPending
	case allDone:
		return api.ClientComplete
	case !allStarted:
		return api.ClientPending
	}
	return api.ClientRunning
}

// appendEvent adds ev and keeps the latest api.MaxAllocEvents events.
func appendEvent(events []api.Event, ev api.Event) []api.Event {
	events = append(events, ev)
	if over := len(events) - api.MaxAllocEvents; over > 0 {
		events = slices.Delete(events, 0, over)
	}
	return events
}

// describeExit names how a task ended, for its state and events.
func describeExit(res driver.ExitResult) (reason, message string) {
	switch {
	case res.Err != nil:
		return EventTaskLost, fmt.Sprintf("driver lost track of the task: %v", res.Err)
	case res.OOMKilled:
		return EventOOMKilled, fmt.Sprintf("killed: out of memory (exit code %d)", res.ExitCode)
	case res.Signal != "":
		return EventTerminated, "killed by " + res.Signal
	}
	return EventTerminated, fmt.Sprintf("exited with code %d", res.ExitCode)
}

// exitState records an exit in a task state.
func exitState(s api.TaskState, res driver.ExitResult, now time.Time) api.TaskState {
	s.PID = 0
	s.Ports = nil // released with the task
	s.FinishedAt = res.FinishedAt
	if s.FinishedAt.IsZero() {
		s.FinishedAt = now
	}
	s.ExitCode, s.Signal = nil, ""
	if res.Err == nil {
		code := res.ExitCode
		s.ExitCode = &code
		s.Signal = res.Signal
	}
	_, s.Message = describeExit(res)
	return s
}

// copyStatus returns a deep copy of s, safe to hand to another goroutine.
func copyStatus(s api.AllocStatus) api.AllocStatus {
	s.Tasks = maps.Clone(s.Tasks)
	for name, t := range s.Tasks {
		if t.ExitCode != nil {
			code := *t.ExitCode
			t.ExitCode = &code
		}
		t.Ports = maps.Clone(t.Ports)
		s.Tasks[name] = t
	}
	s.Events = slices.Clone(s.Events)
	return s
}
