package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// Sources recorded in events.
const (
	sourceJobController  = "job-controller"
	sourceNodeController = "node-controller"
	sourceGC             = "garbage-collector"
)

// unit is a list of operations that belong in one commit, such as a change
// and the event that records it.
type unit []registry.Op

// pack puts units into commits of at most registry.MaxOps operations, in
// order. A unit is split only if it alone exceeds the limit.
func pack(units []unit) [][]registry.Op {
	var commits [][]registry.Op
	var cur []registry.Op
	flush := func() {
		if len(cur) > 0 {
			commits = append(commits, cur)
			cur = nil
		}
	}
	for _, u := range units {
		if len(cur)+len(u) > registry.MaxOps {
			flush()
		}
		for len(u) > registry.MaxOps {
			commits = append(commits, u[:registry.MaxOps:registry.MaxOps])
			u = u[registry.MaxOps:]
		}
		cur = append(cur, u...)
	}
	flush()
	return commits
}

// withEvent returns a copy of events with ev appended, keeping the most
// recent api.MaxAllocEvents. It never writes into the shared slice.
func withEvent(events []api.Event, ev api.Event) []api.Event {
	out := make([]api.Event, 0, len(events)+1)
	out = append(out, events...)
	out = append(out, ev)
	if len(out) > api.MaxAllocEvents {
		out = out[len(out)-api.MaxAllocEvents:]
	}
	return out
}

func allocEvent(a *api.Allocation, now time.Time, typ api.EventType, reason, message, source string) api.Event {
	return api.Event{
		Time: now, Type: typ, Kind: api.KindAllocation, Namespace: a.Namespace, Name: a.Name,
		Reason: reason, Message: message, Source: source,
	}
}

// nameList names a few objects and counts the rest, for event messages.
func nameList(names []string) string {
	const shown = 5
	if len(names) <= shown {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:shown], ", "), len(names)-shown)
}

// plural returns "1 allocation" or "3 allocations".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// cloneGroup copies a group deeply, so that an allocation never shares
// slices or maps with the job it was copied from.
func cloneGroup(g api.Group) api.Group {
	c := g
	if g.Tasks != nil {
		c.Tasks = make([]api.Task, len(g.Tasks))
		for i, t := range g.Tasks {
			t.Config.Args = slices.Clone(t.Config.Args)
			t.Config.Env = maps.Clone(t.Config.Env)
			t.Resources.Ports = slices.Clone(t.Resources.Ports)
			c.Tasks[i] = t
		}
	}
	if g.RestartPolicy != nil {
		rp := *g.RestartPolicy
		c.RestartPolicy = &rp
	}
	c.Constraints = slices.Clone(g.Constraints)
	return c
}

// sortedKeys returns the keys of m in order, so that plans are
// deterministic.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// describeOps summarises operations for logs and tests, one string per
// operation: "update allocs default/web.web[0]".
func describeOps(ops []registry.Op) []string {
	out := make([]string, len(ops))
	for i, op := range ops {
		out[i] = describeOp(op)
	}
	return out
}

func describeOp(op registry.Op) string {
	verb := map[registry.OpType]string{
		registry.OpCreate: "create", registry.OpUpdate: "update",
		registry.OpUpsert: "upsert", registry.OpDelete: "delete",
	}[op.Type]
	name := op.Name
	if op.Namespace != "" {
		name = op.Namespace + "/" + op.Name
	}
	return fmt.Sprintf("%s %s %s", verb, op.Kind, name)
}
