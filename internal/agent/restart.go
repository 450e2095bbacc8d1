package agent

import (
	"fmt"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

// maxRestartDelay bounds the doubling of the restart delay.
const maxRestartDelay = time.Hour

// exitDecision is what happens after a task exited.
type exitDecision struct {
	// Restart says to start the task again after Delay.
	Restart bool
	Delay   time.Duration
	// Failed says the task ended for good as a failure: the allocation
	// fails. A task that ends for good without Failed completed.
	Failed bool
	// Reason explains the decision for the allocation's events.
	Reason string
}

// restartTracker applies a group's restart policy to the exits of one task.
// It is a plain value: the caller passes the time, so decisions are pure.
type restartTracker struct {
	policy  api.RestartPolicy
	jobType api.JobType
	// windowStart is when the current interval began (the first exit in it).
	windowStart time.Time
	// attempts counts the restarts made in the current interval.
	attempts int
}

func newRestartTracker(p *api.RestartPolicy, t api.JobType) restartTracker {
	policy := api.DefaultRestartPolicy(t)
	if p != nil {
		policy = *p
	}
	if policy.Mode == "" {
		policy.Mode = api.RestartFail
	}
	return restartTracker{policy: policy, jobType: t}
}

// onExit decides what follows an exit observed at now. Batch tasks that
// succeed are done; every other exit (any exit of a service task) is
// restarted while the policy allows: Attempts restarts within Interval, the
// delay doubling with each attempt. When the attempts are used up, mode fail
// fails the task and mode delay waits for the interval to end. An Interval
// of zero never ends, so Attempts then bounds the restarts for good.
func (t *restartTracker) onExit(res driver.ExitResult, now time.Time) exitDecision {
	if t.jobType == api.JobBatch && res.Successful() {
		return exitDecision{Reason: "task completed successfully"}
	}
	interval := t.policy.Interval.Std()
	if t.windowStart.IsZero() || interval > 0 && now.Sub(t.windowStart) >= interval {
		t.windowStart = now
		t.attempts = 0
	}
	if t.attempts < t.policy.Attempts {
		t.attempts++
		d := restartDelay(t.policy.Delay.Std(), t.attempts)
		return exitDecision{Restart: true, Delay: d, Reason: "restarting in " + d.String()}
	}
	used := fmt.Sprintf("restart attempts exhausted (%d within %s)", t.policy.Attempts, t.policy.Interval)
	if t.policy.Attempts == 0 {
		used = "restart policy allows no restarts"
	}
	if t.policy.Mode == api.RestartDelay && interval > 0 {
		next := t.windowStart.Add(interval)
		d := max(next.Sub(now), 0)
		t.windowStart = next
		t.attempts = 0
		return exitDecision{Restart: true, Delay: d, Reason: used + "; restarting in " + d.String() + " when the interval ends"}
	}
	return exitDecision{Failed: true, Reason: used}
}

// restartDelay is base doubled for every attempt after the first.
func restartDelay(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt; i++ {
		if d >= maxRestartDelay/2 {
			return maxRestartDelay
		}
		d *= 2
	}
	return min(d, maxRestartDelay)
}
