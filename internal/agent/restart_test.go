package agent

import (
	"errors"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

func TestRestartTracker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fail := driver.ExitResult{ExitCode: 1}
	ok := driver.ExitResult{}
	policy := func(attempts int, interval, delay time.Duration, mode api.RestartMode) *api.RestartPolicy {
		return &api.RestartPolicy{Attempts: attempts, Interval: api.Duration(interval), Delay: api.Duration(delay), Mode: mode}
	}
	type exit struct {
		at   time.Duration // after t0
		res  driver.ExitResult
		want exitDecision
	}
	tests := []struct {
		name    string
		policy  *api.RestartPolicy
		jobType api.JobType
		exits   []exit
	}{
		{
			name:    "batch success ends the task",
			policy:  policy(3, time.Hour, time.Second, api.RestartFail),
			jobType: api.JobBatch,
			exits:   []exit{{0, ok, exitDecision{Reason: "task completed successfully"}}},
		},
		{
			name:    "service exit 0 restarts",
			policy:  policy(3, time.Hour, time.Second, api.RestartFail),
			jobType: api.JobService,
			exits:   []exit{{0, ok, exitDecision{Restart: true, Delay: time.Second, Reason: "restarting in 1s"}}},
		},
		{
			name:    "delay doubles, then mode fail fails",
			policy:  policy(3, time.Hour, time.Second, api.RestartFail),
			jobType: api.JobBatch,
			exits: []exit{
				{0, fail, exitDecision{Restart: true, Delay: 1 * time.Second, Reason: "restarting in 1s"}},
				{2 * time.Second, fail, exitDecision{Restart: true, Delay: 2 * time.Second, Reason: "restarting in 2s"}},
				{5 * time.Second, fail, exitDecision{Restart: true, Delay: 4 * time.Second, Reason: "restarting in 4s"}},
				{10 * time.Second, fail, exitDecision{Failed: true, Reason: "restart attempts exhausted (3 within 1h0m0s)"}},
			},
		},
		{
			name:    "service exhausted fails even on exit 0",
			policy:  policy(1, time.Hour, time.Second, api.RestartFail),
			jobType: api.JobService,
			exits: []exit{
				{0, ok, exitDecision{Restart: true, Delay: time.Second, Reason: "restarting in 1s"}},
				{time.Minute, ok, exitDecision{Failed: true, Reason: "restart attempts exhausted (1 within 1h0m0s)"}},
			},
		},
		{
			name:    "a new interval resets the attempts and the delay",
			policy:  policy(1, time.Minute, time.Second, api.RestartFail),
			jobType: api.JobService,
			exits: []exit{
				{0, fail, exitDecision{Restart: true, Delay: time.Second, Reason: "restarting in 1s"}},
				{2 * time.Minute, fail, exitDecision{Restart: true, Delay: time.Second, Reason: "restarting in 1s"}},
				{2*time.Minute + time.Second, fail, exitDecision{Failed: true, Reason: "restart attempts exhausted (1 within 1m0s)"}},
			},
		},
		{
			name:    "mode delay waits for the interval to end",
			policy:  policy(1, time.Minute, time.Second, api.RestartDelay),
			jobType: api.JobService,
			exits: []exit{
				{0, fail, exitDecision{Restart: true, Delay: time.Second, Reason: "restarting in 1s"}},
				{10 * time.Second, fail, exitDecision{Restart: true, Delay: 50 * time.Second,
					Reason: "restart attempts exhausted (1 within 1m0s); restarting in 50s when the interval ends"}},
				// The wait opened a new interval at 60s.
				{70 * time.Second, fail, exitDecision{Restart: true, Delay: time.Second, Reason: "restarting in 1s"}},
			},
		},
		{
			name:    "no attempts fails at once",
			policy:  policy(0, time.Minute, time.Second, api.RestartFail),
			jobType: api.JobBatch,
			exits:   []exit{{0, fail, exitDecision{Failed: true, Reason: "restart policy allows no restarts"}}},
		},
		{
			name:    "a zero interval never resets",
			policy:  policy(1, 0, time.Second, api.RestartFail),
			jobType: api.JobService,
			exits: []exit{
				{0, fail, exitDecision{Restart: true, Delay: time.Second, Reason: "restarting in 1s"}},
				{1000 * time.Hour, fail, exitDecision{Failed: true, Reason: "restart attempts exhausted (1 within 0s)"}},
			},
		},
		{
			name:    "OOM kill and lost task count as failures",
			policy:  policy(1, time.Hour, time.Second, api.RestartFail),
			jobType: api.JobBatch,
			exits: []exit{
				{0, driver.ExitResult{OOMKilled: true, ExitCode: 137}, exitDecision{Restart: true, Delay: time.Second, Reason: "restarting in 1s"}},
				{time.Second, driver.ExitResult{Err: errors.New("gone")}, exitDecision{Failed: true, Reason: "restart attempts exhausted (1 within 1h0m0s)"}},
			},
		},
		{
			name:    "the default policy applies without one",
			jobType: api.JobService,
			exits: []exit{
				{0, fail, exitDecision{Restart: true, Delay: time.Second, Reason: "restarting in 1s"}},
				{time.Second, fail, exitDecision{Restart: true, Delay: 2 * time.Second, Reason: "restarting in 2s"}},
				{2 * time.Second, fail, exitDecision{Failed: true, Reason: "restart attempts exhausted (2 within 30m0s)"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newRestartTracker(tt.policy, tt.jobType)
			for i, e := range tt.exits {
				got := tr.onExit(e.res, t0.Add(e.at))
				if got != e.want {
					t.Fatalf("exit %d: got %+v, want %+v", i, got, e.want)
				}
			}
		})
	}
}

func TestRestartDelayIsBounded(t *testing.T) {
	for _, tt := range []struct {
		base    time.Duration
		attempt int
		want    time.Duration
	}{
		{time.Second, 1, time.Second},
		{time.Second, 4, 8 * time.Second},
		{time.Second, 100, maxRestartDelay},
		{0, 5, 0},
		{2 * time.Hour, 1, maxRestartDelay},
	} {
		if got := restartDelay(tt.base, tt.attempt); got != tt.want {
			t.Errorf("restartDelay(%s, %d) = %s, want %s", tt.base, tt.attempt, got, tt.want)
		}
	}
}
