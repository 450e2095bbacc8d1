package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

func TestClientStatus(t *testing.T) {
	pending := taskRecord{state: api.TaskState{State: api.TaskPending}}
	running := taskRecord{started: true, state: api.TaskState{State: api.TaskRunning}}
	restarting := taskRecord{started: true, state: api.TaskState{State: api.TaskPending, Restarts: 1}}
	succeeded := taskRecord{started: true, done: true, state: api.TaskState{State: api.TaskDead}}
	failed := taskRecord{started: true, done: true, state: api.TaskState{State: api.TaskDead, Failed: true}}
	interrupted := taskRecord{started: true, done: true, interrupted: true, state: api.TaskState{State: api.TaskDead}}
	neverStarted := taskRecord{done: true, state: api.TaskState{State: api.TaskDead}}
	for _, tt := range []struct {
		name  string
		tasks []taskRecord
		want  api.ClientStatus
	}{
		{"not all started", []taskRecord{running, pending}, api.ClientPending},
		{"all started", []taskRecord{running, running}, api.ClientRunning},
		{"restarting keeps running", []taskRecord{running, restarting}, api.ClientRunning},
		{"one done, one running", []taskRecord{succeeded, running}, api.ClientRunning},
		{"all done", []taskRecord{succeeded, succeeded}, api.ClientComplete},
		{"stopped before starting", []taskRecord{neverStarted}, api.ClientComplete},
		{"one failed for good", []taskRecord{failed, running}, api.ClientFailed},
		{"failed wins over interrupted", []taskRecord{failed, interrupted}, api.ClientFailed},
		{"shut down by the agent", []taskRecord{interrupted, succeeded}, api.ClientPending},
		{"shutdown under way", []taskRecord{interrupted, running}, api.ClientRunning},
	} {
		if got := clientStatus(tt.tasks); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestAppendEventKeepsTheLatest(t *testing.T) {
	var events []api.Event
	for i := range api.MaxAllocEvents + 5 {
		events = appendEvent(events, api.Event{Message: fmt.Sprint(i)})
	}
	if len(events) != api.MaxAllocEvents || events[0].Message != "5" || events[len(events)-1].Message != fmt.Sprint(api.MaxAllocEvents+4) {
		t.Errorf("events %v", events)
	}
}

func TestExitState(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		res        driver.ExitResult
		wantCode   *int
		wantSignal string
		wantMsg    string
	}{
		{driver.ExitResult{ExitCode: 3}, new(3), "", "exited with code 3"},
		{driver.ExitResult{ExitCode: 137, Signal: "SIGKILL"}, new(137), "SIGKILL", "killed by SIGKILL"},
		{driver.ExitResult{ExitCode: 137, OOMKilled: true}, new(137), "", "killed: out of memory (exit code 137)"},
		{driver.ExitResult{Err: fmt.Errorf("shim gone")}, nil, "", "driver lost track of the task: shim gone"},
	} {
		s := exitState(api.TaskState{State: api.TaskRunning, PID: 42}, tt.res, now)
		if s.PID != 0 || !s.FinishedAt.Equal(now) || s.Signal != tt.wantSignal || s.Message != tt.wantMsg ||
			(s.ExitCode == nil) != (tt.wantCode == nil) || s.ExitCode != nil && *s.ExitCode != *tt.wantCode {
			t.Errorf("exitState(%+v) = %+v", tt.res, s)
		}
	}
}
