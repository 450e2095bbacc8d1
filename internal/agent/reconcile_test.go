package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/herd-project/herd/api"
)

// planSummary is a plan in comparable form: UIDs, and messages of rejections.
type planSummary struct {
	Start    []string
	Reject   map[string]string
	Finish   []string
	Stop     []stopAction
	Forget   []string
	Deferred []string
}

func summarize(p plan) planSummary {
	s := planSummary{Stop: p.Stop, Forget: p.Forget, Deferred: p.Deferred}
	for _, a := range p.Start {
		s.Start = append(s.Start, a.UID)
	}
	for _, a := range p.Finish {
		s.Finish = append(s.Finish, a.UID)
	}
	for _, r := range p.Reject {
		if s.Reject == nil {
			s.Reject = map[string]string{}
		}
		s.Reject[r.Alloc.UID] = r.Message
	}
	return s
}

func running(uid string, res api.Resources) runnerView {
	return runnerView{UID: uid, Resources: res, Active: true}
}

func TestReconcile(t *testing.T) {
	small := api.Resources{CPU: 100, Memory: 64 * mib}
	alloc := api.Resources{CPU: 4000, Memory: 1024 * mib}
	tests := []struct {
		name    string
		desired []*api.Allocation
		runners map[string]runnerView
		drivers map[string]bool
		ports   []int
		want    planSummary
	}{
		{
			name:    "starts a new allocation",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode)},
			want:    planSummary{Start: []string{"u1"}},
		},
		{
			name:    "ignores allocations of other nodes",
			desired: []*api.Allocation{testAlloc(0, "u1", "n2"), testAlloc(1, "u2", "")},
		},
		{
			name:    "keeps what runs",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode)},
			runners: map[string]runnerView{"u1": running("u1", small)},
		},
		{
			name:    "never runs an incarnation reported terminal again",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode, withClientStatus(api.ClientComplete)), testAlloc(1, "u2", testNode, withClientStatus(api.ClientFailed)), testAlloc(2, "u3", testNode, withClientStatus(api.ClientLost))},
		},
		{
			name:    "restarts an incarnation that was running before the agent restarted",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode, withClientStatus(api.ClientRunning))},
			want:    planSummary{Start: []string{"u1"}},
		},
		{
			name:    "stops on desired stop and reports",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode, withDesired(api.DesiredStop), func(a *api.Allocation) { a.Spec.DesiredReason = "scaled down" })},
			runners: map[string]runnerView{"u1": running("u1", small)},
			want:    planSummary{Stop: []stopAction{{UID: "u1", Report: true, Reason: "scaled down"}}},
		},
		{
			name:    "a stop under way is not repeated",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode, withDesired(api.DesiredStop))},
			runners: map[string]runnerView{"u1": {UID: "u1", Resources: small, Active: true, Stopping: true}},
		},
		{
			name:    "stops without report when the UID changed, and starts the new incarnation",
			desired: []*api.Allocation{testAlloc(0, "u2", testNode)},
			runners: map[string]runnerView{"u1": running("u1", small)},
			want: planSummary{
				Start: []string{"u2"},
				Stop:  []stopAction{{UID: "u1", Reason: "allocation was replaced or removed from this node"}},
			},
		},
		{
			name:    "stops without report when the allocation moved to another node",
			desired: []*api.Allocation{testAlloc(0, "u1", "n2")},
			runners: map[string]runnerView{"u1": running("u1", small)},
			want:    planSummary{Stop: []stopAction{{UID: "u1", Reason: "allocation was replaced or removed from this node"}}},
		},
		{
			name:    "stops a detached incarnation (report refused with 409)",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode)},
			runners: map[string]runnerView{"u1": {UID: "u1", Resources: small, Active: true, Detached: true}},
			want:    planSummary{Stop: []stopAction{{UID: "u1", Reason: "allocation was replaced or removed from this node"}}},
		},
		{
			name:    "forgets finished incarnations that left the view, keeps listed ones",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode, withClientStatus(api.ClientComplete))},
			runners: map[string]runnerView{"u1": {UID: "u1"}, "u2": {UID: "u2"}},
			want:    planSummary{Forget: []string{"u2"}},
		},
		{
			name:    "reports complete a wanted-stopped allocation that runs nothing here",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode, withDesired(api.DesiredStop), withClientStatus(api.ClientRunning)), testAlloc(1, "u2", testNode, withDesired(api.DesiredStop), withClientStatus(api.ClientComplete))},
			want:    planSummary{Finish: []string{"u1"}},
		},
		{
			name:    "rejects memory over-commit",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode, withMemory(600*mib)), testAlloc(1, "u2", testNode, withMemory(600*mib))},
			want: planSummary{
				Start:  []string{"u1"},
				Reject: map[string]string{"u2": "rejected by node: would over-commit memory (requested 600MiB, 600MiB in use of 1GiB allocatable)"},
			},
		},
		{
			name:    "counts what already runs",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode, withCPU(1500)), testAlloc(1, "u2", testNode, withCPU(3000))},
			runners: map[string]runnerView{"u1": running("u1", api.Resources{CPU: 1500})},
			want: planSummary{
				Reject: map[string]string{"u2": "rejected by node: would over-commit cpu (requested 3000m, 1500m in use of 4000m allocatable)"},
			},
		},
		{
			name:    "finished incarnations hold nothing",
			desired: []*api.Allocation{testAlloc(1, "u2", testNode, withMemory(1000*mib))},
			runners: map[string]runnerView{"u1": {UID: "u1", Resources: api.Resources{Memory: 1000 * mib}}},
			want:    planSummary{Start: []string{"u2"}, Forget: []string{"u1"}},
		},
		{
			name:    "waits for a stopping incarnation to free its resources",
			desired: []*api.Allocation{testAlloc(1, "u2", testNode, withMemory(800*mib))},
			runners: map[string]runnerView{"u1": {UID: "u1", Resources: api.Resources{Memory: 800 * mib}, Active: true, Stopping: true}},
			want:    planSummary{Deferred: []string{"u2"}},
		},
		{
			name:    "waits for a replaced incarnation to free its port",
			desired: []*api.Allocation{testAlloc(0, "u2", testNode, withPort(8080))},
			runners: map[string]runnerView{"u1": running("u1", api.Resources{Ports: []api.Port{{Name: "http", Port: 8080}}})},
			want: planSummary{
				Stop:     []stopAction{{UID: "u1", Reason: "allocation was replaced or removed from this node"}},
				Deferred: []string{"u2"},
			},
		},
		{
			name:    "rejects a port in use",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode, withPort(8080)), testAlloc(1, "u2", testNode, withPort(8080))},
			want: planSummary{
				Start:  []string{"u1"},
				Reject: map[string]string{"u2": "rejected by node: port 8080 (http) is already in use on this node"},
			},
		},
		{
			name:    "rejects a reserved port",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode, withPort(22))},
			ports:   []int{22},
			want:    planSummary{Reject: map[string]string{"u1": "rejected by node: port 22 (http) is already in use on this node"}},
		},
		{
			name:    "rejects a missing driver",
			desired: []*api.Allocation{testAlloc(0, "u1", testNode)},
			drivers: map[string]bool{"exec": true},
			want:    planSummary{Reject: map[string]string{"u1": `rejected by node: task main: driver "fake" is not available (have: exec)`}},
		},
		{
			name: "rejects names unfit for directories",
			desired: []*api.Allocation{
				testAlloc(0, "../x", testNode),
				testAlloc(1, "u2", testNode, withTasks("../etc")),
				testAlloc(2, "u3", testNode, withTasks("a", "a")),
				testAlloc(3, "u4", testNode, withTasks()),
			},
			want: planSummary{Reject: map[string]string{
				"../x": `rejected by node: allocation uid "../x" cannot be used as a directory name`,
				"u2":   `rejected by node: task name "../etc" must consist of lower case letters, digits and '-', and start and end with a letter or digit`,
				"u3":   `rejected by node: duplicate task name "a"`,
				"u4":   "rejected by node: group has no tasks",
			}},
		},
		{
			name:    "admits in name order, deterministically",
			desired: []*api.Allocation{testAlloc(2, "u3", testNode, withMemory(512*mib)), testAlloc(0, "u1", testNode, withMemory(512*mib)), testAlloc(1, "u2", testNode, withMemory(512*mib))},
			want: planSummary{
				Start:  []string{"u1", "u2"},
				Reject: map[string]string{"u3": "rejected by node: would over-commit memory (requested 512MiB, 1GiB in use of 1GiB allocatable)"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drivers := tt.drivers
			if drivers == nil {
				drivers = map[string]bool{testDriver: true}
			}
			got := summarize(reconcile(reconcileInput{
				Node:          testNode,
				Desired:       tt.desired,
				Runners:       tt.runners,
				Allocatable:   alloc,
				ReservedPorts: tt.ports,
				Drivers:       drivers,
			}))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1KiB", 1536: "1.5KiB", 64 * mib: "64MiB", 1 << 30: "1GiB", 3 << 60: "3EiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
