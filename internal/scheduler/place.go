// Package scheduler places pending allocations on nodes.
//
// Its core, Place, is a pure function: given the allocations to place, every
// node and every allocation (to know what the nodes already hold), it runs
// each allocation through a fixed chain of filters, scores the nodes that
// pass with a strategy (spread or binpack) and returns one Decision per
// allocation: a node, or an explanation such as
// "0/3 nodes eligible: 2 lacked memory, 1 draining".
//
// Scheduler is the loop around it: it wakes on changes of allocations and
// nodes, runs Place over a registry snapshot and commits the bindings and
// failures, each conditional on the allocation's resource version.
package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/herd-project/herd/api"
)

// Strategy chooses among the nodes that can take an allocation.
type Strategy string

const (
	// Spread prefers the node running the fewest allocations of the same
	// job, then the least utilised one. It is the default.
	Spread Strategy = "spread"
	// Binpack prefers the node that is the most utilised after placement,
	// keeping other nodes free for large allocations.
	Binpack Strategy = "binpack"
)

// ParseStrategy reads a strategy name; "" means Spread.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case "", Spread:
		return Spread, nil
	case Binpack:
		return Binpack, nil
	}
	return "", fmt.Errorf("unknown strategy %q: want %q or %q", s, Spread, Binpack)
}

// Request is the input of one placement pass.
type Request struct {
	// Now decides whether an allocation's NotBefore has passed.
	Now time.Time
	// Pending are the allocations to place. Allocations that are not
	// pending (see IsPending) are ignored.
	Pending []*api.Allocation
	// Nodes are all nodes, whatever their state.
	Nodes []*api.Node
	// Allocs are all allocations; the placed, non-terminal ones count
	// against their node's resources and ports.
	Allocs []*api.Allocation
	// Strategy scores the eligible nodes; "" or an unknown name means Spread.
	Strategy Strategy
}

// Decision is the outcome for one allocation.
type Decision struct {
	Alloc *api.Allocation
	// Node is the chosen node, or "" when no node can take the allocation.
	Node string
	// Failure explains why no node could take the allocation.
	Failure string
	// Score is the strategy's score of the chosen node; higher is better.
	// Binpack scores the node's utilisation after placement (0 to 1).
	// Spread scores (1 - utilisation)/2 minus the allocations of the same
	// job already on the node, so fewer such allocations always win.
	Score float64
}

// IsPending reports whether a is waiting for a node: it is to run, has no
// node, its NotBefore has passed and its client status is not terminal.
func IsPending(a *api.Allocation, now time.Time) bool {
	return a != nil &&
		a.Spec.DesiredStatus == api.DesiredRun &&
		a.Spec.Node == "" &&
		!a.Status.ClientStatus.Terminal() &&
		!a.Spec.NotBefore.After(now)
}

// Place decides a node for every pending allocation of req, in the order of
// namespace, job, group and index. Each placement counts against the node
// for the placements after it in the same pass. Place does no I/O and does
// not modify its input.
func Place(req Request) []Decision {
	nodes := newNodeStates(req.Nodes, req.Allocs)
	score := scorerFor(req.Strategy)
	asks := pendingAsks(req.Pending, req.Now)
	decisions := make([]Decision, 0, len(asks))
	for _, a := range asks {
		decisions = append(decisions, placeOne(a, nodes, score))
	}
	return decisions
}

// placeOne picks the best eligible node for a, or explains why there is none.
func placeOne(a *ask, nodes []*nodeState, score scorer) Decision {
	var (
		best       *nodeState
		bestScore  float64
		rejections map[string]int
	)
	for _, n := range nodes {
		if reason := rejectReason(defaultFilters, a, n); reason != "" {
			if rejections == nil {
				rejections = map[string]int{}
			}
			rejections[reason]++
			continue
		}
		// Nodes are sorted by name, so on equal scores the first one wins.
		if s := score(a, n); best == nil || s > bestScore {
			best, bestScore = n, s
		}
	}
	if best == nil {
		return Decision{Alloc: a.alloc, Failure: explain(len(nodes), rejections)}
	}
	best.add(a.job, a.request)
	return Decision{Alloc: a.alloc, Node: best.node.Name, Score: bestScore}
}

// ask is one allocation to place with what it needs, computed once.
type ask struct {
	alloc   *api.Allocation
	job     string // namespace/job, for spread counts
	request api.Resources
	drivers []string // distinct, in task order
	// constraintReasons are the rejection reasons of the group's
	// constraints, by index, formatted once rather than once per node.
	constraintReasons []string
}

func newAsk(a *api.Allocation) *ask {
	var drivers []string
	for _, t := range a.Spec.GroupSpec.Tasks {
		if !slices.Contains(drivers, t.Driver) {
			drivers = append(drivers, t.Driver)
		}
	}
	constraints := a.Spec.GroupSpec.Constraints
	reasons := make([]string, len(constraints))
	for i, c := range constraints {
		reasons[i] = constraintReason(c)
	}
	return &ask{
		alloc:             a,
		job:               jobKey(a),
		request:           a.Spec.GroupSpec.GroupResources(),
		drivers:           drivers,
		constraintReasons: reasons,
	}
}

func jobKey(a *api.Allocation) string { return a.Namespace + "/" + a.Spec.Job }

// pendingAsks keeps the pending allocations, once each, in a deterministic
// order.
func pendingAsks(pending []*api.Allocation, now time.Time) []*ask {
	seen := make(map[string]bool, len(pending))
	asks := make([]*ask, 0, len(pending))
	for _, a := range pending {
		if !IsPending(a, now) {
			continue
		}
		key := a.Namespace + "/" + a.Name
		if seen[key] {
			continue
		}
		seen[key] = true
		asks = append(asks, newAsk(a))
	}
	slices.SortFunc(asks, func(x, y *ask) int {
		a, b := x.alloc, y.alloc
		return cmp.Or(
			cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(a.Spec.Job, b.Spec.Job),
			cmp.Compare(a.Spec.Group, b.Spec.Group),
			cmp.Compare(a.Spec.Index, b.Spec.Index),
			cmp.Compare(a.Name, b.Name),
		)
	})
	return asks
}

// nodeState is a node with what its allocations hold, updated as the pass
// places allocations on it.
type nodeState struct {
	node   *api.Node
	cpu    int64
	memory int64
	ports  map[int]bool
	jobs   map[string]int // allocations per namespace/job
}

// add counts an allocation of job requesting r against the node.
func (n *nodeState) add(job string, r api.Resources) {
	n.cpu += r.CPU
	n.memory += r.Memory
	for _, p := range r.Ports {
		if n.ports == nil {
			n.ports = map[int]bool{}
		}
		n.ports[p.Port] = true
	}
	if n.jobs == nil {
		n.jobs = map[string]int{}
	}
	n.jobs[job]++
}

// holdsResources reports whether a counts against its node: it is placed
// and not terminal. A stopping allocation still holds its resources until
// its agent reports it terminal.
func holdsResources(a *api.Allocation) bool {
	return a != nil && a.Spec.Node != "" && !a.Status.ClientStatus.Terminal()
}

// newNodeStates returns one state per distinct node name, sorted by name,
// with the resources, ports and job counts of the allocations on it.
func newNodeStates(nodes []*api.Node, allocs []*api.Allocation) []*nodeState {
	byName := make(map[string]*nodeState, len(nodes))
	states := make([]*nodeState, 0, len(nodes))
	for _, n := range nodes {
		if n == nil || byName[n.Name] != nil {
			continue
		}
		s := &nodeState{node: n}
		byName[n.Name] = s
		states = append(states, s)
	}
	for _, a := range allocs {
		if !holdsResources(a) {
			continue
		}
		if s := byName[a.Spec.Node]; s != nil {
			s.add(jobKey(a), a.Spec.GroupSpec.GroupResources())
		}
	}
	slices.SortFunc(states, func(x, y *nodeState) int { return cmp.Compare(x.node.Name, y.node.Name) })
	return states
}
