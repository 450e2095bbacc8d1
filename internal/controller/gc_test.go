package controller

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herd-project/herd/api"
)

func TestPlanGCAllocs(t *testing.T) {
	const retention = time.Minute
	web := newJob("web", api.JobService, 2)
	reborn := *web
	reborn.UID = "web-uid-2"
	gone := newJob("gone", api.JobService, 3)
	done := func(opts ...allocOpt) allocOpt {
		return func(a *api.Allocation) {
			stopping(reasonScaledDown)(a)
			status(api.ClientComplete)(a)
			for _, o := range opts {
				o(a)
			}
		}
	}

	tests := []struct {
		name     string
		objs     []any
		want     []string
		wantNext time.Duration // from t0; -1 for none
	}{{
		name: "allocations of a deleted job go once they stopped",
		objs: []any{
			allocOf(gone, 0, done()),
			allocOf(gone, 1, stopping(reasonJobDeleted)),         // still running
			allocOf(gone, 2, status(api.ClientFailed)),           // not yet asked to stop
			allocOf(gone, 3, done(status(api.ClientLost))),       // lost counts as stopped
			allocOf(gone, 4, done(updatedAt(t0.Add(time.Hour)))), // no retention
		},
		want:     []string{"delete allocs gone.g[0]@20", "delete allocs gone.g[3]@20", "delete allocs gone.g[4]@20"},
		wantNext: -1,
	}, {
		name: "scaled-down allocations are kept for the retention after they stopped",
		objs: []any{web, allocOf(web, 0), allocOf(web, 1),
			allocOf(web, 2, done(updatedAt(t0.Add(-retention)))),
			allocOf(web, 3, done(updatedAt(t0.Add(-30*time.Second)))),
			allocOf(web, 4, done(updatedAt(t0.Add(-50*time.Second)))),
			allocOf(web, 5, done(updatedAt(time.Time{}))),
		},
		want:     []string{"delete allocs web.g[2]@20", "delete allocs web.g[5]@20"},
		wantNext: 10 * time.Second,
	}, {
		name:     "an allocation the job wants again is left to the job controller",
		objs:     []any{web, allocOf(web, 0, done(updatedAt(t0.Add(-time.Hour)))), allocOf(web, 1)},
		wantNext: -1,
	}, {
		name: "allocations of an earlier job of the same name: kept if the new one wants the key",
		objs: []any{withCount(&reborn, 1),
			allocOf(web, 0, done()), allocOf(web, 1, done()), allocOf(web, 2, stopping(reasonJobDeleted))},
		want:     []string{"delete allocs web.g[1]@20"},
		wantNext: -1,
	}, {
		name:     "allocations of a removed group age like scaled-down ones",
		objs:     []any{newJob("web", api.JobService, 0), allocOf(web, 0, done(updatedAt(t0.Add(-2*time.Minute))))},
		want:     []string{"delete allocs web.g[0]@20"},
		wantNext: -1,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := snapOf(tc.objs...)
			g := gcPlan{now: t0, scaledDownRetention: retention, eventRetention: time.Hour}
			got := summarize(snap, t0, pack(g.allocs(snap)))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			wantNext := time.Time{}
			if tc.wantNext >= 0 {
				wantNext = t0.Add(tc.wantNext)
			}
			if !g.nextAlloc.Equal(wantNext) {
				t.Errorf("next = %v, want %v", g.nextAlloc, wantNext)
			}
		})
	}
}

func TestPlanGCEvents(t *testing.T) {
	name := func(at time.Time, suffix string) string { return fmt.Sprintf("%020d-%s", at.UnixNano(), suffix) }
	names := []string{
		name(t0.Add(-2*time.Hour), "0001"),
		name(t0.Add(-time.Hour), "0002"),
		name(t0.Add(-time.Hour+time.Second), "0003"),
		name(t0, "0004"),
		"garbage",
		"x-0005",
	}
	g := gcPlan{now: t0, eventRetention: time.Hour}
	got := summarize(snapOf(), t0, pack(g.events(names)))
	want := []string{"delete events " + names[0] + "@", "delete events " + names[1] + "@"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if want := t0.Add(time.Second); !g.nextEvent.Equal(want) {
		t.Errorf("next = %v, want %v", g.nextEvent, want)
	}
}
