package scheduler

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herd-project/herd/api"
)

// outcome renders a decision as "name -> node" or "name !! failure".
func outcome(d Decision) string {
	if d.Node == "" {
		return d.Alloc.Namespace + "/" + d.Alloc.Name + " !! " + d.Failure
	}
	return d.Alloc.Namespace + "/" + d.Alloc.Name + " -> " + d.Node
}

func outcomes(ds []Decision) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = outcome(d)
	}
	return out
}

func TestPlace(t *testing.T) {
	type N = []*api.Node
	type A = []*api.Allocation
	tests := []struct {
		name     string
		nodes    N
		allocs   A // existing allocations besides the pending ones
		pending  A
		strategy Strategy
		want     []string
	}{
		{
			name:    "no nodes",
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] !! 0/0 nodes eligible: no nodes registered"},
		},
		{
			name:    "one ready node",
			nodes:   N{testNode("n1")},
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] -> n1"},
		},
		{
			name: "the example of the design note",
			nodes: N{
				testNode("n1", allocatable(4000, gib/2)),
				testNode("n2", allocatable(4000, gib/2)),
				testNode("n3", draining),
			},
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] !! 0/3 nodes eligible: 2 lacked memory, 1 draining"},
		},
		{
			name: "every filter rejects one node; equal counts sort by reason",
			nodes: N{
				testNode("a", down),
				testNode("b", draining),
				testNode("c", paused),
				testNode("d", noDrivers),
				testNode("e", allocatable(500, 8*gib)),
				testNode("f", allocatable(4000, gib/2)),
				testNode("g"),
				testNode("h", attr(api.AttrOS, "darwin")),
			},
			allocs:  A{testAlloc("db", 0, on("g"), asks(0, 0, 8080))},
			pending: A{testAlloc("web", 0, asks(1000, gib, 8080), constraint("attr.os", api.OpEqual, "linux"))},
			want: []string{"default/web.g[0] !! 0/8 nodes eligible: 1 constraint attr.os == linux, 1 down, " +
				"1 draining, 1 lacked cpu, 1 lacked memory, 1 missing driver exec, 1 paused, 1 port 8080 in use"},
		},
		{
			name:    "a node is counted under the first filter that rejects it",
			nodes:   N{testNode("n1", down, draining, allocatable(0, 0)), testNode("n2", draining, noDrivers)},
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] !! 0/2 nodes eligible: 1 down, 1 draining"},
		},
		{
			name:    "an unset availability is active",
			nodes:   N{testNode("n1", func(n *api.Node) { n.Spec.Availability = "" })},
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] -> n1"},
		},
		{
			name:    "every task's driver is needed",
			nodes:   N{testNode("n1"), testNode("n2", func(n *api.Node) { n.Status.Drivers = []string{"docker", "exec"} })},
			pending: A{testAlloc("web", 0, withDriver("docker"))},
			want:    []string{"default/web.g[0] -> n2"},
		},
		{
			name:    "missing drivers are named",
			nodes:   N{testNode("n1"), testNode("n2", noDrivers)},
			pending: A{testAlloc("web", 0, withDriver("docker"))},
			want:    []string{"default/web.g[0] !! 0/2 nodes eligible: 1 missing driver docker, 1 missing driver exec"},
		},
		{
			name:  "allocations that are not terminal hold resources, stopping ones too",
			nodes: N{testNode("n1", allocatable(2000, 8*gib))},
			allocs: A{
				testAlloc("a", 0, on("n1"), clientStatus(api.ClientRunning)),
				testAlloc("b", 0, on("n1"), clientStatus(api.ClientRunning), desired(api.DesiredStop)),
			},
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] !! 0/1 nodes eligible: 1 lacked cpu"},
		},
		{
			name:  "terminal allocations hold nothing",
			nodes: N{testNode("n1", allocatable(2000, 8*gib))},
			allocs: A{
				testAlloc("a", 0, on("n1"), clientStatus(api.ClientComplete)),
				testAlloc("b", 0, on("n1"), clientStatus(api.ClientFailed)),
				testAlloc("c", 0, on("n1"), clientStatus(api.ClientLost)),
				testAlloc("d", 0, on("n1"), clientStatus(api.ClientRunning)),
			},
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] -> n1"},
		},
		{
			name:    "a request exactly filling the node fits",
			nodes:   N{testNode("n1", allocatable(1000, gib))},
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] -> n1"},
		},
		{
			name:    "allocations on unknown nodes are ignored",
			nodes:   N{testNode("n1", allocatable(1000, gib))},
			allocs:  A{testAlloc("a", 0, on("gone"), asks(1000, gib, 80))},
			pending: A{testAlloc("web", 0, asks(1000, gib, 80))},
			want:    []string{"default/web.g[0] -> n1"},
		},
		{
			name:    "placements of one pass use up a node",
			nodes:   N{testNode("n1", allocatable(2000, 8*gib))},
			pending: A{testAlloc("web", 0), testAlloc("web", 1), testAlloc("web", 2)},
			want: []string{
				"default/web.g[0] -> n1",
				"default/web.g[1] -> n1",
				"default/web.g[2] !! 0/1 nodes eligible: 1 lacked cpu",
			},
		},
		{
			name:    "placements of one pass take their ports",
			nodes:   N{testNode("n1"), testNode("n2")},
			pending: A{testAlloc("web", 0, asks(0, 0, 8080)), testAlloc("web", 1, asks(0, 0, 8080)), testAlloc("web", 2, asks(0, 0, 8080))},
			want: []string{
				"default/web.g[0] -> n1",
				"default/web.g[1] -> n2",
				"default/web.g[2] !! 0/2 nodes eligible: 2 port 8080 in use",
			},
		},
		{
			name:    "other ports do not conflict",
			nodes:   N{testNode("n1")},
			allocs:  A{testAlloc("a", 0, on("n1"), asks(0, 0, 80, 443))},
			pending: A{testAlloc("web", 0, asks(0, 0, 8080))},
			want:    []string{"default/web.g[0] -> n1"},
		},
		{
			name:    "spread: one allocation of the job per node",
			nodes:   N{testNode("n3"), testNode("n1"), testNode("n2")},
			pending: A{testAlloc("web", 2), testAlloc("web", 1), testAlloc("web", 0)},
			want:    []string{"default/web.g[0] -> n1", "default/web.g[1] -> n2", "default/web.g[2] -> n3"},
		},
		{
			name:  "spread: the job's allocations outweigh utilisation",
			nodes: N{testNode("n1"), testNode("n2")},
			allocs: A{
				testAlloc("web", 0, on("n1"), asks(0, 0)),
				testAlloc("big", 0, on("n2"), asks(3000, 7*gib)),
			},
			pending: A{testAlloc("web", 1)},
			want:    []string{"default/web.g[1] -> n2"},
		},
		{
			name:  "spread: then the least utilised node",
			nodes: N{testNode("n1"), testNode("n2"), testNode("n3")},
			allocs: A{
				testAlloc("a", 0, on("n1"), asks(2000, 0)),
				testAlloc("b", 0, on("n2"), asks(0, gib)),
				testAlloc("c", 0, on("n3"), asks(1000, 4*gib)),
			},
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] -> n2"},
		},
		{
			name:  "spread: utilisation is relative to each node's size",
			nodes: N{testNode("small", allocatable(2000, 2*gib)), testNode("large", allocatable(16000, 32*gib))},
			allocs: A{
				testAlloc("a", 0, on("large"), asks(4000, 8*gib)),
			},
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] -> large"},
		},
		{
			name:     "binpack: the most utilised node that fits",
			strategy: Binpack,
			nodes:    N{testNode("n1"), testNode("n2"), testNode("n3")},
			allocs: A{
				testAlloc("a", 0, on("n1"), asks(1000, gib)),
				testAlloc("b", 0, on("n2"), asks(2000, 6*gib)),
				testAlloc("c", 0, on("n3"), asks(3500, 7*gib)),
			},
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] -> n2"},
		},
		{
			name:     "binpack: fills one node before the next",
			strategy: Binpack,
			nodes:    N{testNode("n2", allocatable(2000, 8*gib)), testNode("n1", allocatable(2000, 8*gib))},
			pending:  A{testAlloc("web", 0), testAlloc("web", 1), testAlloc("web", 2)},
			want:     []string{"default/web.g[0] -> n1", "default/web.g[1] -> n1", "default/web.g[2] -> n2"},
		},
		{
			name:     "binpack: spread counts do not matter",
			strategy: Binpack,
			nodes:    N{testNode("n1"), testNode("n2")},
			allocs:   A{testAlloc("web", 0, on("n2"))},
			pending:  A{testAlloc("web", 1)},
			want:     []string{"default/web.g[1] -> n2"},
		},
		{
			name:     "unknown strategy spreads",
			strategy: "random",
			nodes:    N{testNode("n1"), testNode("n2")},
			pending:  A{testAlloc("web", 0), testAlloc("web", 1)},
			want:     []string{"default/web.g[0] -> n1", "default/web.g[1] -> n2"},
		},
		{
			name:     "ties go to the first node by name",
			strategy: Binpack,
			nodes:    N{testNode("n10"), testNode("n9"), testNode("n1")},
			pending:  A{testAlloc("web", 0, asks(0, 0))},
			want:     []string{"default/web.g[0] -> n1"},
		},
		{
			name:    "zero requests fit a node with nothing allocatable",
			nodes:   N{testNode("n1", allocatable(0, 0))},
			pending: A{testAlloc("web", 0, asks(0, 0))},
			want:    []string{"default/web.g[0] -> n1"},
		},
		{
			name:  "an over-committed node takes nothing more",
			nodes: N{testNode("n1", allocatable(1000, gib))},
			allocs: A{
				testAlloc("a", 0, on("n1"), asks(2000, 0)),
			},
			pending: A{testAlloc("web", 0, asks(0, 0))},
			want:    []string{"default/web.g[0] !! 0/1 nodes eligible: 1 lacked cpu"},
		},
		{
			name:  "constraints on attributes, the node name and labels",
			nodes: N{testNode("n1"), testNode("n2", label("zone", "b")), testNode("n3", label("zone", "a"), attr(api.AttrArch, "arm64"))},
			pending: A{
				testAlloc("a", 0, constraint("attr.arch", api.OpEqual, "arm64")),
				testAlloc("b", 0, constraint("attr.name", api.OpEqual, "n2")),
				testAlloc("c", 0, constraint("label.zone", api.OpEqual, "a")),
				testAlloc("d", 0, constraint("label.zone", api.OpNotEqual, "a"), constraint("attr.name", api.OpNotEqual, "n1")),
				testAlloc("e", 0, constraint("attr.os", api.OpEqual, "windows")),
			},
			want: []string{
				"default/a.g[0] -> n3",
				"default/b.g[0] -> n2",
				"default/c.g[0] -> n3",
				"default/d.g[0] -> n2",
				"default/e.g[0] !! 0/3 nodes eligible: 3 constraint attr.os == windows",
			},
		},
		{
			name:  "a missing attribute fails == and passes !=",
			nodes: N{testNode("n1", label("gpu", "yes")), testNode("n2")},
			pending: A{
				testAlloc("a", 0, constraint("label.gpu", api.OpNotEqual, "yes")),
				testAlloc("b", 0, constraint("attr.kernel", api.OpEqual, "6.1")),
			},
			want: []string{
				"default/a.g[0] -> n2",
				"default/b.g[0] !! 0/2 nodes eligible: 2 constraint attr.kernel == 6.1",
			},
		},
		{
			name:  "invalid constraints reject nodes instead of failing",
			nodes: N{testNode("n1")},
			pending: A{
				testAlloc("a", 0, constraint("attr.os", "~=", "linux")),
				testAlloc("b", 0, constraint("os", api.OpEqual, "linux")),
			},
			want: []string{
				"default/a.g[0] !! 0/1 nodes eligible: 1 constraint attr.os ~= linux",
				"default/b.g[0] !! 0/1 nodes eligible: 1 constraint os == linux",
			},
		},
		{
			name:  "only pending allocations are placed",
			nodes: N{testNode("n1")},
			pending: A{
				testAlloc("stop", 0, desired(api.DesiredStop)),
				testAlloc("placed", 0, on("n1")),
				testAlloc("later", 0, notBefore(t0.Add(time.Nanosecond))),
				testAlloc("now", 0, notBefore(t0)),
				testAlloc("lost", 0, clientStatus(api.ClientLost)),
				testAlloc("unreported", 0, clientStatus("")),
				nil,
			},
			want: []string{"default/now.g[0] -> n1", "default/unreported.g[0] -> n1"},
		},
		{
			name:    "a pending allocation listed twice is placed once",
			nodes:   N{testNode("n1")},
			pending: A{testAlloc("web", 0), testAlloc("web", 0)},
			want:    []string{"default/web.g[0] -> n1"},
		},
		{
			name:    "nodes listed twice count once",
			nodes:   N{testNode("n1", down), testNode("n1"), nil},
			pending: A{testAlloc("web", 0)},
			want:    []string{"default/web.g[0] !! 0/1 nodes eligible: 1 down"},
		},
		{
			name:  "order: namespace, job, group, then index as a number",
			nodes: N{testNode("n1", allocatable(100000, 100*gib))},
			pending: A{
				testAlloc("web", 10),
				testAlloc("web", 2),
				testAlloc("api", 0, inGroup("z")),
				testAlloc("web", 0, inNamespace("a-team")),
				testAlloc("api", 0, inGroup("b")),
			},
			want: []string{
				"a-team/web.g[0] -> n1",
				"default/api.b[0] -> n1",
				"default/api.z[0] -> n1",
				"default/web.g[2] -> n1",
				"default/web.g[10] -> n1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := Request{
				Now:      t0,
				Pending:  tt.pending,
				Nodes:    tt.nodes,
				Allocs:   append(append([]*api.Allocation(nil), tt.allocs...), tt.pending...),
				Strategy: tt.strategy,
			}
			before := mustJSON(t, req)
			got := outcomes(Place(req))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decisions (-want +got):\n%s", diff)
			}
			if after := mustJSON(t, req); after != before {
				t.Errorf("Place modified its input")
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPlaceScores(t *testing.T) {
	nodes := []*api.Node{testNode("n1"), testNode("n2")}
	existing := []*api.Allocation{testAlloc("web", 0, on("n1"), asks(2000, 4*gib))}
	pending := []*api.Allocation{testAlloc("web", 1, asks(2000, 4*gib))}
	tests := []struct {
		strategy Strategy
		node     string
		score    float64
	}{
		// n2 after placement: half used; no allocation of the job.
		{Spread, "n2", 0.25},
		// n1 after placement: full.
		{Binpack, "n1", 1},
	}
	for _, tt := range tests {
		t.Run(string(tt.strategy), func(t *testing.T) {
			d := Place(Request{Now: t0, Pending: pending, Nodes: nodes, Allocs: existing, Strategy: tt.strategy})
			if len(d) != 1 || d[0].Node != tt.node || d[0].Score != tt.score {
				t.Fatalf("got %+v, want node %s score %v", d, tt.node, tt.score)
			}
		})
	}
}

// TestPlaceIsDeterministic shuffles the input and expects the same
// decisions.
func TestPlaceIsDeterministic(t *testing.T) {
	req := syntheticRequest(50, 200, 20, Spread)
	want := outcomes(Place(req))
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		rng.Shuffle(len(req.Nodes), func(i, j int) { req.Nodes[i], req.Nodes[j] = req.Nodes[j], req.Nodes[i] })
		rng.Shuffle(len(req.Allocs), func(i, j int) { req.Allocs[i], req.Allocs[j] = req.Allocs[j], req.Allocs[i] })
		rng.Shuffle(len(req.Pending), func(i, j int) { req.Pending[i], req.Pending[j] = req.Pending[j], req.Pending[i] })
		if diff := cmp.Diff(want, outcomes(Place(req))); diff != "" {
			t.Fatalf("decisions changed with the input order (-want +got):\n%s", diff)
		}
	}
}

// TestPlaceNeverOvercommits places many allocations and checks that no
// node ends up holding more than it offers or a port twice.
func TestPlaceNeverOvercommits(t *testing.T) {
	for _, strategy := range []Strategy{Spread, Binpack} {
		t.Run(string(strategy), func(t *testing.T) {
			req := syntheticRequest(20, 100, 400, strategy)
			var placed []*api.Allocation
			for _, d := range Place(req) {
				if d.Node == "" {
					continue
				}
				a := *d.Alloc
				a.Spec.Node = d.Node
				placed = append(placed, &a)
			}
			if len(placed) == 0 {
				t.Fatal("nothing placed")
			}
			states := newNodeStates(req.Nodes, append(req.Allocs, placed...))
			for _, n := range states {
				if n.cpu > n.node.Status.Allocatable.CPU || n.memory > n.node.Status.Allocatable.Memory {
					t.Errorf("node %s holds cpu %d memory %d, offers %+v", n.node.Name, n.cpu, n.memory, n.node.Status.Allocatable)
				}
			}
			ports := map[string]bool{}
			for _, a := range append(req.Allocs, placed...) {
				if !holdsResources(a) {
					continue
				}
				for _, p := range a.Spec.GroupSpec.GroupResources().Ports {
					key := fmt.Sprintf("%s:%d", a.Spec.Node, p.Port)
					if ports[key] {
						t.Errorf("port %s taken twice", key)
					}
					ports[key] = true
				}
			}
		})
	}
}

func TestParseStrategy(t *testing.T) {
	tests := []struct {
		in      string
		want    Strategy
		wantErr string
	}{
		{"", Spread, ""},
		{"spread", Spread, ""},
		{"binpack", Binpack, ""},
		{"Binpack", "", `unknown strategy "Binpack": want "spread" or "binpack"`},
	}
	for _, tt := range tests {
		got, err := ParseStrategy(tt.in)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
			t.Errorf("ParseStrategy(%q) = %q, %v; want %q, %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// syntheticRequest builds a cluster of nodes of varied sizes, some not
// eligible, with existing allocations on them, and pending allocations of
// several jobs, some with a static port.
func syntheticRequest(pending, nodes, existing int, strategy Strategy) Request {
	rng := rand.New(rand.NewPCG(7, 11))
	req := Request{Now: t0, Strategy: strategy}
	for i := range nodes {
		n := testNode(fmt.Sprintf("node-%04d", i),
			allocatable(int64(2000+1000*rng.IntN(15)), int64(2+rng.IntN(30))*gib),
			label("zone", fmt.Sprintf("z%d", i%3)))
		switch i % 50 {
		case 7:
			down(n)
		case 8:
			draining(n)
		}
		req.Nodes = append(req.Nodes, n)
	}
	for i := range existing {
		node := req.Nodes[rng.IntN(nodes)].Name
		a := testAlloc(fmt.Sprintf("old-%d", i%40), i, on(node), clientStatus(api.ClientRunning),
			asks(int64(100*(1+rng.IntN(5))), int64(1+rng.IntN(4))*gib/4))
		if i%10 == 0 {
			a.Status.ClientStatus = api.ClientComplete
		}
		req.Allocs = append(req.Allocs, a)
	}
	for i := range pending {
		opts := []func(*api.Allocation){asks(int64(250*(1+rng.IntN(4))), int64(1+rng.IntN(8))*gib/4)}
		if i%5 == 0 {
			opts = append(opts, asks(100, gib/8, 9000+i%3))
		}
		if i%7 == 0 {
			opts = append(opts, constraint("label.zone", api.OpNotEqual, "z1"))
		}
		a := testAlloc(fmt.Sprintf("new-%d", i%10), i, opts...)
		req.Pending = append(req.Pending, a)
		req.Allocs = append(req.Allocs, a)
	}
	return req
}
