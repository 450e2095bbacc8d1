package controller

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jonboulle/clockwork"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

func testPlanner() jobPlanner {
	return jobPlanner{baseDelay: 5 * time.Second, maxDelay: 5 * time.Minute, newUID: counter()}
}

func TestPlanJobs(t *testing.T) {
	web := newJob("web", api.JobService, 3)
	batch := newJob("b", api.JobBatch, 2)
	web2 := withArgs(web, "200")
	reborn := *web
	reborn.UID = "web-uid-2"

	steady := func(j *api.Job, allocs ...*api.Allocation) []any {
		out := []any{withStatus(j, allocs...)}
		for _, a := range allocs {
			out = append(out, a)
		}
		return out
	}
	objs := func(parts ...[]any) []any {
		var out []any
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}

	tests := []struct {
		name string
		objs []any
		want []string
	}{{
		name: "new job gets its allocations and a pending status",
		objs: objs(defaultNodes(), []any{web}),
		want: []string{
			"create web.g[0] pending", "create web.g[1] pending", "create web.g[2] pending",
			"event Normal Job/web AllocationsCreated: created 3 allocations: web.g[0], web.g[1], web.g[2]",
			"status web pending",
		},
	}, {
		name: "steady state writes nothing",
		objs: objs(defaultNodes(), steady(web, allocOf(web, 0), allocOf(web, 1), allocOf(web, 2))),
	}, {
		name: "scale up creates the missing indexes",
		objs: objs(defaultNodes(), steady(withCount(web, 5), allocOf(web, 0), allocOf(web, 1), allocOf(web, 2))),
		want: []string{
			"create web.g[3] pending", "create web.g[4] pending",
			"event Normal Job/web AllocationsCreated: created 2 allocations: web.g[3], web.g[4]",
			"status web running",
		},
	}, {
		name: "scale down stops the highest indexes; an unplaced one completes at once",
		objs: objs(defaultNodes(), steady(withCount(web, 1),
			allocOf(web, 0), allocOf(web, 1), allocOf(web, 2, unplaced()))),
		want: []string{
			"stop web.g[1] (scaled down)", "stop web.g[2] (scaled down), complete web.g[2]",
			"event Normal Job/web Stopping: scaled down: stopping 2 allocations: web.g[1], web.g[2]",
			"status web running",
		},
	}, {
		name: "scaled-down allocations already stopping are left alone",
		objs: objs(defaultNodes(), steady(withCount(web, 1),
			allocOf(web, 0), allocOf(web, 1, stopping(reasonScaledDown)), allocOf(web, 2, stopping(reasonScaledDown), status(api.ClientComplete)))),
	}, {
		name: "failed service allocation is replaced in place after a backoff",
		objs: objs(defaultNodes(), steady(web,
			allocOf(web, 0, status(api.ClientFailed), exited("main", 2)),
			allocOf(web, 1, status(api.ClientFailed), attempt(3)),
			allocOf(web, 2, status(api.ClientFailed), attempt(12)))),
		want: []string{
			"replace web.g[0] attempt=1 delay=5s prev=n1 (Replaced: allocation web.g[0] failed: task main exited with code 2; placement delayed 5s)",
			"event Warning Allocation/web.g[0] Replaced: allocation web.g[0] failed: task main exited with code 2; placement delayed 5s",
			"replace web.g[1] attempt=4 delay=40s prev=n1 (Replaced: allocation web.g[1] failed; placement delayed 40s)",
			"event Warning Allocation/web.g[1] Replaced: allocation web.g[1] failed; placement delayed 40s",
			"replace web.g[2] attempt=13 delay=5m0s prev=n1 (Replaced: allocation web.g[2] failed; placement delayed 5m0s)",
			"event Warning Allocation/web.g[2] Replaced: allocation web.g[2] failed; placement delayed 5m0s",
			"status web pending",
		},
	}, {
		name: "lost allocation is replaced at once",
		objs: objs(defaultNodes(), steady(web, allocOf(web, 0), allocOf(web, 1), allocOf(web, 2, status(api.ClientLost), onNode("n2")))),
		want: []string{
			"replace web.g[2] attempt=1 delay=0s prev=n2 (Replaced: allocation lost with node n2)",
			"event Warning Allocation/web.g[2] Replaced: allocation lost with node n2",
			"status web running",
		},
	}, {
		name: "allocations on a draining node move",
		objs: objs([]any{newNode("n1", api.NodeReady, api.Drain), newNode("n2", api.NodeReady, api.Active)},
			steady(web, allocOf(web, 0), allocOf(web, 1, onNode("n2")), allocOf(web, 2, status(api.ClientPending)))),
		want: []string{
			"replace web.g[0] attempt=1 delay=0s prev=n1 (Replaced: node draining)",
			"event Normal Allocation/web.g[0] Replaced: node draining",
			"replace web.g[2] attempt=1 delay=0s prev=n1 (Replaced: node draining)",
			"event Normal Allocation/web.g[2] Replaced: node draining",
			"status web running",
		},
	}, {
		name: "allocation on a node that no longer exists is replaced",
		objs: objs(defaultNodes(), steady(web, allocOf(web, 0), allocOf(web, 1), allocOf(web, 2, onNode("gone")))),
		want: []string{
			"replace web.g[2] attempt=1 delay=0s prev=gone (Replaced: node gone no longer exists)",
			"event Warning Allocation/web.g[2] Replaced: node gone no longer exists",
			"status web running",
		},
	}, {
		name: "batch job completes when every allocation completed",
		objs: objs(defaultNodes(), []any{withStatus(batch, allocOf(batch, 0, status(api.ClientComplete)), allocOf(batch, 1)),
			allocOf(batch, 0, status(api.ClientComplete)), allocOf(batch, 1, status(api.ClientComplete))}),
		want: []string{
			"status b complete",
			"event Normal Job/b JobComplete: every allocation completed",
		},
	}, {
		name: "completed batch allocations stay, even on a draining node",
		objs: objs([]any{newNode("n1", api.NodeReady, api.Drain)},
			steady(batch, allocOf(batch, 0, status(api.ClientComplete)), allocOf(batch, 1, status(api.ClientComplete)))),
	}, {
		name: "failed batch allocation fails the job",
		objs: objs(defaultNodes(), []any{withStatus(batch, allocOf(batch, 0), allocOf(batch, 1)),
			allocOf(batch, 0), allocOf(batch, 1, status(api.ClientFailed), exited("main", 3))}),
		want: []string{
			"status b failed: allocation b.g[1] failed: task main exited with code 3",
			"event Warning Job/b JobFailed: allocation b.g[1] failed: task main exited with code 3",
		},
	}, {
		name: "lost batch allocation is replaced",
		objs: objs(defaultNodes(), steady(batch, allocOf(batch, 0, status(api.ClientComplete)), allocOf(batch, 1, status(api.ClientLost)))),
		want: []string{
			"replace b.g[1] attempt=1 delay=0s prev=n1 (Replaced: allocation lost with node n1)",
			"event Warning Allocation/b.g[1] Replaced: allocation lost with node n1",
			"status b running",
		},
	}, {
		name: "changed spec stops running allocations and replaces stopped or unplaced ones",
		objs: objs(defaultNodes(), steady(web2,
			allocOf(web, 0), allocOf(web, 1, status(api.ClientFailed)), allocOf(web, 2, unplaced()))),
		want: []string{
			"stop web.g[0] (job updated)",
			"replace web.g[1] attempt=0 delay=0s prev=n1 (Replaced: job updated)",
			"event Normal Allocation/web.g[1] Replaced: job updated",
			"replace web.g[2] attempt=0 delay=0s prev= (Replaced: job updated)",
			"event Normal Allocation/web.g[2] Replaced: job updated",
			"event Normal Job/web Stopping: job updated: stopping 1 allocation: web.g[0]",
			"status web running",
		},
	}, {
		name: "allocation stopped for an update is replaced once it stopped",
		objs: objs(defaultNodes(), steady(web2,
			allocOf(web, 0, stopping(reasonJobUpdated), status(api.ClientComplete)),
			allocOf(web, 1, stopping(reasonJobUpdated)),
			allocOf(web2, 2))),
		want: []string{
			"replace web.g[0] attempt=0 delay=0s prev=n1 (Replaced: job updated)",
			"event Normal Allocation/web.g[0] Replaced: job updated",
			"status web running",
		},
	}, {
		name: "a count change alone replaces nothing",
		objs: objs(defaultNodes(), steady(withCount(web, 2), allocOf(web, 0), allocOf(web, 1))),
	}, {
		name: "scaled up again: a stopped allocation is reused, a stopping one awaited",
		objs: objs(defaultNodes(), steady(web, allocOf(web, 0),
			allocOf(web, 1, stopping(reasonScaledDown)),
			allocOf(web, 2, stopping(reasonScaledDown), status(api.ClientComplete)))),
		want: []string{
			"replace web.g[2] attempt=0 delay=0s prev=n1 (Replaced: wanted again after: scaled down)",
			"event Normal Allocation/web.g[2] Replaced: wanted again after: scaled down",
			"status web running",
		},
	}, {
		name: "deleted job: allocations stop, unplaced ones complete at once",
		objs: objs(defaultNodes(), []any{allocOf(web, 0), allocOf(web, 1, unplaced()),
			allocOf(web, 2, stopping(reasonJobDeleted))}),
		want: []string{
			"stop web.g[0] (job deleted)", "stop web.g[1] (job deleted), complete web.g[1]",
			"event Normal Job/web Stopping: job deleted: stopping 2 allocations: web.g[0], web.g[1]",
		},
	}, {
		name: "job recreated under the same name: old allocations stop, then are taken over",
		objs: objs(defaultNodes(), steady(withCount(&reborn, 2)),
			[]any{allocOf(web, 0), allocOf(web, 1, status(api.ClientComplete), stopping(reasonJobDeleted)), allocOf(web, 2)}),
		want: []string{
			"stop web.g[0] (job replaced)",
			"replace web.g[1] attempt=0 delay=0s prev=n1 jobUID=web-uid-2 (Replaced: job replaced)",
			"event Normal Allocation/web.g[1] Replaced: job replaced",
			"stop web.g[2] (job deleted)",
			"event Normal Job/web Stopping: job deleted: stopping 1 allocation: web.g[2]",
			"event Normal Job/web Stopping: job replaced: stopping 1 allocation: web.g[0]",
			"status web pending",
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := snapOf(tc.objs...)
			got := summarize(snap, t0, testPlanner().plan(snap, t0))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanJobsStatusGroups(t *testing.T) {
	web := newJob("web", api.JobService, 4)
	snap := snapOf(web, newNode("n1", api.NodeReady, api.Active), allocOf(web, 0), allocOf(web, 1, status(api.ClientFailed)),
		allocOf(web, 2, unplaced()), allocOf(web, 5, stopping(reasonScaledDown), status(api.ClientComplete)))
	commits := testPlanner().plan(snap, t0)
	var job *api.Job
	for _, ops := range commits {
		for _, op := range ops {
			if j, ok := op.Object.(*api.Job); ok {
				job = j
			}
		}
	}
	if job == nil {
		t.Fatalf("no status written: %v", summarize(snap, t0, commits))
	}
	// web.g[1] is replaced (pending) and web.g[3] created in the same pass.
	want := api.JobStatus{Phase: api.JobRunning, Groups: map[string]api.GroupSummary{
		"g": {Desired: 4, Running: 1, Pending: 3, Complete: 1},
	}}
	if diff := cmp.Diff(want, job.Status); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestPlanJobsReplacementKeepsHistory(t *testing.T) {
	web := newJob("web", api.JobService, 1)
	old := allocOf(web, 0, status(api.ClientFailed), attempt(1), exited("main", 1))
	for i := range api.MaxAllocEvents {
		old.Status.Events = append(old.Status.Events, api.Event{Reason: "Old", Message: string(rune('a' + i))})
	}
	snap := snapOf(withStatus(web, old), old, newNode("n1", api.NodeReady, api.Active))
	commits := testPlanner().plan(snap, t0)
	a := commits[0][0].Object.(*api.Allocation)
	if a.UID != "uid-1" || a.Spec.Node != "" || a.Spec.PreviousNode != "n1" || a.Spec.Attempt != 2 ||
		a.Status.ClientStatus != api.ClientPending || a.Status.Tasks != nil || a.ResourceVersion != old.ResourceVersion {
		t.Errorf("replacement = %+v", a)
	}
	if got := a.Spec.NotBefore.Sub(t0); got != 10*time.Second {
		t.Errorf("NotBefore = now+%s, want now+10s", got)
	}
	if n := len(a.Status.Events); n != api.MaxAllocEvents {
		t.Fatalf("%d events, want %d", n, api.MaxAllocEvents)
	}
	if first, last := a.Status.Events[0], a.Status.Events[api.MaxAllocEvents-1]; first.Message != "b" || last.Reason != "Replaced" {
		t.Errorf("events = %+v", a.Status.Events)
	}
	if len(old.Status.Events) != api.MaxAllocEvents || old.Status.Events[0].Message != "a" {
		t.Errorf("the snapshot's allocation was modified: %+v", old.Status.Events)
	}
}

func TestPlanJobsSplitsLargeCommits(t *testing.T) {
	web := newJob("web", api.JobService, 2*registry.MaxOps+10)
	snap := snapOf(web)
	commits := testPlanner().plan(snap, t0)
	if len(commits) != 3 {
		t.Fatalf("%d commits, want 3", len(commits))
	}
	total := 0
	for _, ops := range commits {
		if len(ops) > registry.MaxOps {
			t.Errorf("commit of %d ops", len(ops))
		}
		total += len(ops)
	}
	// Creates, one event, one status.
	if want := 2*registry.MaxOps + 12; total != want {
		t.Errorf("%d ops, want %d", total, want)
	}
}

func TestPlanJobsIgnoresBadInput(t *testing.T) {
	web := newJob("web", api.JobService, 1)
	web.Spec.Groups = append(web.Spec.Groups, web.Spec.Groups[0]) // duplicate group
	foreign := allocOf(newJob("other", api.JobService, 1), 0)
	foreign.Name = "web.g[0]" // a key this job wants, held by another job
	snap := snapOf(web, foreign)
	snap.Jobs["default/nil"] = nil
	snap.Allocs["default/nil"] = nil
	got := summarize(snap, t0, testPlanner().plan(snap, t0))
	// The foreign allocation stops since its own job does not exist.
	want := []string{
		"status web pending",
		"stop web.g[0] (job deleted)",
		"event Normal Job/other Stopping: job deleted: stopping 1 allocation: web.g[0]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if plans := testPlanner().plan(nil, t0); plans != nil {
		t.Errorf("plan of a nil snapshot = %v", plans)
	}
}

// TestPlanJobsConverges applies each plan to a registry and plans again:
// the second plan must be empty. Two planners on the same snapshot write
// each change once: the second one's commits all conflict.
func TestPlanJobsConverges(t *testing.T) {
	web := func() *api.Job { return newJob("web", api.JobService, 3) }
	scenarios := map[string]func() []any{
		"new job": func() []any { return []any{web()} },
		"scale down": func() []any {
			return []any{withCount(web(), 1), allocOf(web(), 0), allocOf(web(), 1), allocOf(web(), 2, unplaced())}
		},
		"failures": func() []any {
			return []any{web(), allocOf(web(), 0, status(api.ClientFailed)), allocOf(web(), 1, status(api.ClientLost))}
		},
		"deleted": func() []any { return []any{allocOf(web(), 0), allocOf(web(), 1, unplaced())} },
		"updated": func() []any {
			return []any{withArgs(web(), "1"), allocOf(web(), 0), allocOf(web(), 1, status(api.ClientComplete), stopping(reasonJobUpdated))}
		},
	}
	for name, objs := range scenarios {
		t.Run(name, func(t *testing.T) {
			reg := newFakeRegistry(clockwork.NewFakeClockAt(t0))
			for _, o := range append(objs(), defaultNodes()...) {
				if obj, ok := o.(api.Object); ok {
					reg.mustCommit(t, registry.Upsert(obj))
				}
			}
			snap := reg.Snapshot()
			first := testPlanner().plan(snap, t0)
			second := testPlanner().plan(snap, t0)
			if len(first) == 0 {
				t.Fatal("nothing planned")
			}
			for _, ops := range first {
				reg.mustCommit(t, ops...)
			}
			for _, ops := range second {
				if _, err := reg.Commit(context.Background(), ops...); !errors.Is(err, registry.ErrConflict) {
					t.Errorf("concurrent commit of %v: %v, want a conflict", describeOps(ops), err)
				}
			}
			if again := testPlanner().plan(reg.Snapshot(), t0); len(again) != 0 {
				t.Errorf("second pass plans %v", summarize(reg.Snapshot(), t0, again))
			}
		})
	}
}
