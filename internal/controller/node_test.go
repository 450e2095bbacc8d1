package controller

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

func TestPlanNodes(t *testing.T) {
	const grace = 5 * time.Second
	web := newJob("web", api.JobService, 4)
	onN1 := []any{
		allocOf(web, 0), allocOf(web, 1, status(api.ClientPending)),
		allocOf(web, 2, status(api.ClientComplete)), allocOf(web, 3, onNode("n2")),
		allocOf(web, 4, stopping(reasonScaledDown)),
	}
	agentMsg := newNode("n3", api.NodeDown, api.Active)
	agentMsg.Status.Message = "cgroups unavailable: limits not enforced"

	tests := []struct {
		name string
		objs []any
		// seen is what the tracker saw, relative to t0.
		seen     map[string]heartbeatSeen
		want     []string
		wantNext time.Duration // from t0; -1 for none
	}{{
		name:     "ready nodes heard within the grace period stay ready",
		objs:     append(defaultNodes(), onN1...),
		seen:     map[string]heartbeatSeen{"n1": {at: t0.Add(-4 * time.Second)}, "n2": {at: t0.Add(-time.Second), changed: true}},
		wantNext: time.Second,
	}, {
		name: "a silent node goes down and its unfinished allocations are lost",
		objs: append(defaultNodes(), onN1...),
		seen: map[string]heartbeatSeen{"n1": {at: t0.Add(-grace), changed: true}, "n2": {at: t0}},
		want: []string{
			"node n1 down: no heartbeat for 5s",
			"event Warning Node/n1 NodeDown: no heartbeat for 5s; 3 allocations lost",
			"lost web.g[0]", "lost web.g[1]", "lost web.g[4]",
		},
		wantNext: grace,
	}, {
		name: "a down node that heartbeats again is ready; its message is cleared",
		objs: []any{newNode("n1", api.NodeDown, api.Active), agentMsg},
		seen: map[string]heartbeatSeen{"n1": {at: t0.Add(-time.Second), changed: true}, "n3": {at: t0, changed: true}},
		want: []string{
			"node n1 ready",
			"event Normal Node/n1 NodeReady: heartbeats resumed",
			"node n3 ready: cgroups unavailable: limits not enforced",
			"event Normal Node/n3 NodeReady: heartbeats resumed",
		},
		wantNext: 4 * time.Second,
	}, {
		name: "a node found down at start stays down until it heartbeats; leftovers are lost",
		objs: append([]any{newNode("n1", api.NodeDown, api.Active)}, onN1...),
		seen: map[string]heartbeatSeen{"n1": {at: t0}},
		want: []string{
			"lost web.g[0]", "lost web.g[1]", "lost web.g[4]",
		},
		wantNext: -1,
	}, {
		name:     "a newly registered node is given the grace period",
		objs:     []any{newNode("n1", "", api.Active)},
		seen:     map[string]heartbeatSeen{"n1": {at: t0}},
		wantNext: grace,
	}, {
		name:     "a node the tracker has not seen yet is skipped",
		objs:     []any{newNode("n1", api.NodeReady, api.Active)},
		seen:     map[string]heartbeatSeen{},
		wantNext: -1,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := snapOf(tc.objs...)
			commits, next := planNodes(snap, tc.seen, t0, grace)
			if diff := cmp.Diff(tc.want, summarize(snap, t0, commits)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			wantNext := time.Time{}
			if tc.wantNext >= 0 {
				wantNext = t0.Add(tc.wantNext)
			}
			if !next.Equal(wantNext) {
				t.Errorf("next = %v, want %v", next, wantNext)
			}
		})
	}
}

func TestHeartbeatTracker(t *testing.T) {
	tr := heartbeatTracker{}
	tr.observe(snapOf(newNode("n1", api.NodeReady, api.Active), heartbeatOf{"n1", 7}), t0)
	if got := tr["n1"]; got != (heartbeatSeen{revision: 7, at: t0}) {
		t.Fatalf("first sight = %+v", got)
	}
	// Same revision later: nothing changes.
	tr.observe(snapOf(newNode("n1", api.NodeReady, api.Active), heartbeatOf{"n1", 7}), t0.Add(3*time.Second))
	if got := tr["n1"]; got.at != t0 || got.changed {
		t.Fatalf("unchanged heartbeat = %+v", got)
	}
	tr.observe(snapOf(newNode("n1", api.NodeReady, api.Active), heartbeatOf{"n1", 9}), t0.Add(4*time.Second))
	if got := tr["n1"]; got != (heartbeatSeen{revision: 9, at: t0.Add(4 * time.Second), changed: true}) {
		t.Fatalf("new heartbeat = %+v", got)
	}
	tr.observe(snapOf(), t0.Add(5*time.Second))
	if len(tr) != 0 {
		t.Fatalf("a removed node is still tracked: %+v", tr)
	}
}

func TestPlanNodesSplitsLargeCommits(t *testing.T) {
	web := newJob("web", api.JobService, 1)
	objs := []any{newNode("n1", api.NodeReady, api.Active)}
	for i := range 150 {
		objs = append(objs, allocOf(web, i))
	}
	snap := snapOf(objs...)
	commits, _ := planNodes(snap, heartbeatTracker{"n1": {at: t0.Add(-time.Minute)}}, t0, 5*time.Second)
	if len(commits) != 2 || len(commits[0]) != registry.MaxOps || len(commits[1]) != 152-registry.MaxOps {
		t.Fatalf("commit sizes: %d commits", len(commits))
	}
	if got := summarizeOp(snap, t0, commits[0][0]); got != "node n1 down: no heartbeat for 5s" {
		t.Errorf("first op = %s", got)
	}
	if got := summarizeOp(snap, t0, commits[0][1]); got != fmt.Sprintf("event Warning Node/n1 NodeDown: no heartbeat for 5s; %d allocations lost", 150) {
		t.Errorf("second op = %s", got)
	}
}
