// Package driver defines how the agent runs tasks: the Driver interface that
// every task driver (exec, later docker) implements, and the values that
// cross it. Drivers keep enough state on disk that a restarted agent can
// recover the tasks an earlier agent process started.
package driver

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/herd-project/herd/api"
)

// ErrNotFound is returned for a task the driver does not know.
var ErrNotFound = errors.New("driver: task not found")

// TaskID names one task of one allocation incarnation.
type TaskID struct {
	// AllocUID is the allocation incarnation's UID: a replacement of an
	// allocation has a new UID, so its tasks never collide with the old ones.
	AllocUID string `json:"allocUID"`
	Task     string `json:"task"`
}

func (id TaskID) String() string { return id.AllocUID + "/" + id.Task }

// StartRequest is everything a driver needs to start a task.
type StartRequest struct {
	ID        TaskID
	Namespace string
	AllocName string
	Task      api.Task
	// Dir is the task's own directory, created by the agent; the default
	// working directory.
	Dir string
	// LogDir is where the task's stdout and stderr go, as rotating log
	// files written with package logstore.
	LogDir string
	// Env is added to the task's own environment (HERD_ALLOC_NAME, ...).
	Env map[string]string
}

// Handle describes a started task.
type Handle struct {
	ID        TaskID    `json:"id"`
	Driver    string    `json:"driver"`
	PID       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"startedAt"`
	// LogDir is where its logs are.
	LogDir string `json:"logDir"`
}

// ExitResult is how a task ended.
type ExitResult struct {
	ExitCode   int
	Signal     string // "SIGKILL", ... when a signal ended it
	OOMKilled  bool
	FinishedAt time.Time
	// Err is set when the driver lost track of the task and cannot tell how
	// it ended.
	Err error
}

// Successful reports whether the task exited with code 0 by itself.
func (r ExitResult) Successful() bool {
	return r.Err == nil && r.ExitCode == 0 && r.Signal == "" && !r.OOMKilled
}

// Fingerprint is what a driver reports about itself on this host.
type Fingerprint struct {
	Healthy bool
	// Message explains an unhealthy driver or a limitation ("cgroups
	// unavailable: limits not enforced").
	Message    string
	Attributes map[string]string
}

// Driver runs tasks of one kind.
type Driver interface {
	Name() string
	Fingerprint(ctx context.Context) Fingerprint
	// Start starts a task and returns once it runs (or failed to start).
	Start(ctx context.Context, req StartRequest) (*Handle, error)
	// Wait returns a channel that receives the task's exit once, also for
	// tasks found by Recover and for tasks that exited while no agent ran.
	Wait(ctx context.Context, id TaskID) (<-chan ExitResult, error)
	// Stop asks the task to stop (SIGTERM to its process group) and kills it
	// (SIGKILL) after timeout. It returns once the task has exited.
	Stop(ctx context.Context, id TaskID, timeout time.Duration) error
	// Destroy removes what the driver keeps of a stopped task (cgroups,
	// state files); log files stay until the agent collects them.
	Destroy(ctx context.Context, id TaskID) error
	// Recover returns the tasks an earlier agent process started that the
	// driver still knows, running or exited.
	Recover(ctx context.Context) ([]*Handle, error)
}

// PortReporter is implemented by drivers that publish task ports on the
// host: Ports returns the host port of each of the task's ports by name, as
// bound (dynamic ports resolved). The agent reports them in the task's
// state after a start and after re-attaching.
type PortReporter interface {
	Ports(ctx context.Context, id TaskID) (map[string]int, error)
}

// Exit records how a task ended, once, for any number of waiters. Drivers
// keep one per task.
type Exit struct {
	once   sync.Once
	done   chan struct{}
	result ExitResult
}

// NewExit returns an Exit that has not happened yet.
func NewExit() *Exit { return &Exit{done: make(chan struct{})} }

// Record sets the result to what compute returns, the first time it is
// called; later calls do nothing (and do not call compute).
func (e *Exit) Record(compute func() ExitResult) {
	e.once.Do(func() {
		e.result = compute()
		close(e.done)
	})
}

// Done is closed once the exit is recorded.
func (e *Exit) Done() <-chan struct{} { return e.done }

// Exited reports whether the exit is recorded.
func (e *Exit) Exited() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// Result is the recorded exit; valid once Done is closed.
func (e *Exit) Result() ExitResult { return e.result }

// Deliver serves Wait: the returned channel receives the result once and is
// then closed, or is closed without a value when ctx or stop ends first.
func (e *Exit) Deliver(ctx context.Context, stop <-chan struct{}) <-chan ExitResult {
	ch := make(chan ExitResult, 1)
	go func() {
		defer close(ch)
		select {
		case <-e.done:
			ch <- e.result
		case <-ctx.Done():
		case <-stop:
		}
	}()
	return ch
}
