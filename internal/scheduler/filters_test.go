package scheduler

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/herd-project/herd/api"
)

func TestFilters(t *testing.T) {
	tests := []struct {
		name   string
		filter filter
		node   *api.Node
		held   []*api.Allocation // on the node
		alloc  *api.Allocation
		want   string
	}{
		{"ready", readyFilter{}, testNode("n"), nil, testAlloc("j", 0), ""},
		{"down", readyFilter{}, testNode("n", down), nil, testAlloc("j", 0), "down"},
		{"unknown status", readyFilter{}, testNode("n", func(n *api.Node) { n.Status.Status = "" }), nil, testAlloc("j", 0), "down"},
		{"active", availabilityFilter{}, testNode("n"), nil, testAlloc("j", 0), ""},
		{"draining", availabilityFilter{}, testNode("n", draining), nil, testAlloc("j", 0), "draining"},
		{"paused", availabilityFilter{}, testNode("n", paused), nil, testAlloc("j", 0), "paused"},
		{"unknown availability", availabilityFilter{}, testNode("n", func(n *api.Node) { n.Spec.Availability = "gone" }), nil, testAlloc("j", 0), "availability gone"},
		{"driver present", driverFilter{}, testNode("n"), nil, testAlloc("j", 0), ""},
		{"driver missing", driverFilter{}, testNode("n"), nil, testAlloc("j", 0, withDriver("docker")), "missing driver docker"},
		{"fits", resourcesFilter{}, testNode("n"), []*api.Allocation{testAlloc("o", 0, asks(3000, 7*gib))}, testAlloc("j", 0), ""},
		{"lacks cpu", resourcesFilter{}, testNode("n"), []*api.Allocation{testAlloc("o", 0, asks(3001, 0))}, testAlloc("j", 0), "lacked cpu"},
		{"lacks memory", resourcesFilter{}, testNode("n"), []*api.Allocation{testAlloc("o", 0, asks(0, 7*gib+1))}, testAlloc("j", 0), "lacked memory"},
		{"lacks both: cpu first", resourcesFilter{}, testNode("n", allocatable(0, 0)), nil, testAlloc("j", 0), "lacked cpu"},
		{"ports free", portsFilter{}, testNode("n"), []*api.Allocation{testAlloc("o", 0, asks(0, 0, 80))}, testAlloc("j", 0, asks(0, 0, 8080)), ""},
		{"port taken", portsFilter{}, testNode("n"), []*api.Allocation{testAlloc("o", 0, asks(0, 0, 80, 443))}, testAlloc("j", 0, asks(0, 0, 8080, 443, 80)), "port 443 in use"},
		{"constraints hold", constraintsFilter{}, testNode("n"), nil, testAlloc("j", 0, constraint("attr.os", api.OpEqual, "linux")), ""},
		{"first failing constraint", constraintsFilter{}, testNode("n"), nil,
			testAlloc("j", 0, constraint("attr.os", api.OpEqual, "linux"), constraint("attr.arch", api.OpNotEqual, "amd64"), constraint("attr.os", api.OpEqual, "bsd")),
			"constraint attr.arch != amd64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			states := newNodeStates([]*api.Node{tt.node}, onNode(tt.held, tt.node.Name))
			if got := tt.filter.Check(newAsk(tt.alloc), states[0]); got != tt.want {
				t.Errorf("%s.Check = %q, want %q", tt.filter.Name(), got, tt.want)
			}
		})
	}
}

func onNode(allocs []*api.Allocation, node string) []*api.Allocation {
	for _, a := range allocs {
		a.Spec.Node = node
	}
	return allocs
}

func TestFilterOrder(t *testing.T) {
	var got []string
	for _, f := range defaultFilters {
		got = append(got, f.Name())
	}
	want := []string{"ready", "availability", "driver", "resources", "ports", "constraints"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("filter order (-want +got):\n%s", diff)
	}
}

func TestNodeAttribute(t *testing.T) {
	n := testNode("n1", label("zone", "a"), label("empty", ""))
	tests := []struct {
		attribute string
		want      string
		wantOK    bool
	}{
		{"attr.os", "linux", true},
		{"attr.name", "n1", true},
		{"attr.kernel", "", false},
		{"label.zone", "a", true},
		{"label.empty", "", true},
		{"label.region", "", false},
		{"os", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := nodeAttribute(n, tt.attribute)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("nodeAttribute(%q) = %q, %v; want %q, %v", tt.attribute, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestExplain(t *testing.T) {
	tests := []struct {
		name       string
		total      int
		rejections map[string]int
		want       string
	}{
		{"no nodes", 0, nil, "0/0 nodes eligible: no nodes registered"},
		{"one reason", 1, map[string]int{"down": 1}, "0/1 nodes eligible: 1 down"},
		{"by count", 3, map[string]int{"draining": 1, "lacked memory": 2}, "0/3 nodes eligible: 2 lacked memory, 1 draining"},
		{"then by reason", 4, map[string]int{"paused": 1, "down": 1, "lacked cpu": 2},
			"0/4 nodes eligible: 2 lacked cpu, 1 down, 1 paused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := explain(tt.total, tt.rejections); got != tt.want {
				t.Errorf("explain = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFraction(t *testing.T) {
	tests := []struct {
		used, total int64
		want        float64
	}{
		{0, 0, 0}, {5, 0, 0}, {0, 10, 0}, {5, 10, 0.5}, {10, 10, 1}, {20, 10, 1}, {-5, 10, 0},
	}
	for _, tt := range tests {
		if got := fraction(tt.used, tt.total); got != tt.want {
			t.Errorf("fraction(%d, %d) = %v, want %v", tt.used, tt.total, got, tt.want)
		}
	}
}
