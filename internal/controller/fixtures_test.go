package controller

import (
	"fmt"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// t0 is the time of the table tests.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newJob is a job with one group "g" of count allocations.
func newJob(name string, typ api.JobType, count int) *api.Job {
	j := &api.Job{
		Meta: api.Meta{Name: name, Namespace: api.DefaultNamespace, UID: name + "-uid", ResourceVersion: "10"},
		Spec: api.JobSpec{Type: typ, Groups: []api.Group{{
			Name: "g", Count: count,
			Tasks: []api.Task{{Name: "main", Config: api.TaskConfig{Command: "sleep", Args: []string{"100"}}}},
		}}},
	}
	j.Defaults()
	return j
}

// withCount returns a copy of j with group g's count changed.
func withCount(j *api.Job, count int) *api.Job {
	c := *j
	c.Spec.Groups = []api.Group{cloneGroup(j.Spec.Groups[0])}
	c.Spec.Groups[0].Count = count
	return &c
}

// withArgs returns a copy of j whose task runs other arguments.
func withArgs(j *api.Job, args ...string) *api.Job {
	c := *j
	c.Spec.Groups = []api.Group{cloneGroup(j.Spec.Groups[0])}
	c.Spec.Groups[0].Tasks[0].Config.Args = args
	return &c
}

// withStatus returns a copy of j whose status already says what allocs
// show, so that a pass has nothing to write.
func withStatus(j *api.Job, allocs ...*api.Allocation) *api.Job {
	c := *j
	m := map[string]*api.Allocation{}
	for _, a := range allocs {
		m[a.Name] = a
	}
	c.Status = jobStatus(j, m)
	return &c
}

type allocOpt func(*api.Allocation)

// allocOf is the index-th allocation of j's group, running on n1.
func allocOf(j *api.Job, index int, opts ...allocOpt) *api.Allocation {
	g := j.Spec.Groups[0]
	a := &api.Allocation{
		Meta: api.Meta{
			Name: api.AllocName(j.Name, g.Name, index), Namespace: j.Namespace,
			UID: fmt.Sprintf("%s-%d-uid", j.Name, index), ResourceVersion: "20",
		},
		Spec: api.AllocSpec{
			Job: j.Name, Group: g.Name, Index: index, JobUID: j.UID, JobVersion: j.ResourceVersion,
			GroupSpec: cloneGroup(g), JobType: j.Spec.Type, Node: "n1", DesiredStatus: api.DesiredRun,
		},
		Status: api.AllocStatus{ClientStatus: api.ClientRunning, UpdatedAt: t0.Add(-time.Hour)},
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

func status(s api.ClientStatus) allocOpt {
	return func(a *api.Allocation) { a.Status.ClientStatus = s }
}
func onNode(n string) allocOpt { return func(a *api.Allocation) { a.Spec.Node = n } }
func unplaced() allocOpt {
	return func(a *api.Allocation) { a.Spec.Node = ""; a.Status.ClientStatus = api.ClientPending }
}
func attempt(n int) allocOpt { return func(a *api.Allocation) { a.Spec.Attempt = n } }
func stopping(reason string) allocOpt {
	return func(a *api.Allocation) { a.Spec.DesiredStatus = api.DesiredStop; a.Spec.DesiredReason = reason }
}
func jobUID(uid string) allocOpt { return func(a *api.Allocation) { a.Spec.JobUID = uid } }
func updatedAt(t time.Time) allocOpt {
	return func(a *api.Allocation) { a.Status.UpdatedAt = t }
}
func exited(task string, code int) allocOpt {
	return func(a *api.Allocation) {
		a.Status.Tasks = map[string]api.TaskState{task: {State: api.TaskDead, Failed: code != 0, ExitCode: &code}}
	}
}

func newNode(name string, st api.NodeStatus, avail api.Availability) *api.Node {
	return &api.Node{
		Meta:   api.Meta{Name: name, UID: name + "-uid", ResourceVersion: "5"},
		Spec:   api.NodeSpec{Availability: avail},
		Status: api.NodeInfo{Status: st, Address: name + ":4647", Drivers: []string{"exec"}},
	}
}

// snapOf builds a snapshot of jobs, allocations, nodes and heartbeats.
func snapOf(objs ...any) *registry.Snapshot {
	s := &registry.Snapshot{
		Revision:   100,
		Jobs:       map[string]*api.Job{},
		Allocs:     map[string]*api.Allocation{},
		Nodes:      map[string]*api.Node{},
		Heartbeats: map[string]registry.Heartbeat{},
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *api.Job:
			s.Jobs[registry.Key(o.Namespace, o.Name)] = o
		case *api.Allocation:
			s.Allocs[registry.Key(o.Namespace, o.Name)] = o
		case *api.Node:
			s.Nodes[o.Name] = o
		case heartbeatOf:
			s.Heartbeats[o.node] = registry.Heartbeat{Revision: o.rev}
		default:
			panic(fmt.Sprintf("snapOf: %T", o))
		}
	}
	return s
}

type heartbeatOf struct {
	node string
	rev  int64
}

// defaultNodes are two ready, active nodes, n1 and n2.
func defaultNodes() []any {
	return []any{newNode("n1", api.NodeReady, api.Active), newNode("n2", api.NodeReady, api.Active)}
}

// summarize describes planned commits for table tests, one line per
// operation, relative to the snapshot they were planned from.
func summarize(snap *registry.Snapshot, now time.Time, commits [][]registry.Op) []string {
	var out []string
	for _, ops := range commits {
		for _, op := range ops {
			out = append(out, summarizeOp(snap, now, op))
		}
	}
	return out
}

func summarizeOp(snap *registry.Snapshot, now time.Time, op registry.Op) string {
	if op.Type == registry.OpDelete {
		return fmt.Sprintf("delete %s %s@%s", op.Kind, op.Name, op.ResourceVersion)
	}
	switch o := op.Object.(type) {
	case *api.Event:
		return fmt.Sprintf("event %s %s/%s %s: %s", o.Type, o.Kind, o.Name, o.Reason, o.Message)
	case *api.Job:
		s := fmt.Sprintf("status %s %s", o.Name, o.Status.Phase)
		if o.Status.Message != "" {
			s += ": " + o.Status.Message
		}
		return s
	case *api.Node:
		s := fmt.Sprintf("node %s %s", o.Name, o.Status.Status)
		if o.Status.Message != "" {
			s += ": " + o.Status.Message
		}
		return s
	case *api.Allocation:
		if op.Type == registry.OpCreate {
			return fmt.Sprintf("create %s %s", o.Name, o.Status.ClientStatus)
		}
		old := snap.Allocs[registry.Key(o.Namespace, o.Name)]
		if old == nil {
			return "update of a missing allocation " + o.Name
		}
		if o.UID != old.UID {
			delay := time.Duration(0)
			if !o.Spec.NotBefore.IsZero() {
				delay = o.Spec.NotBefore.Sub(now)
			}
			s := fmt.Sprintf("replace %s attempt=%d delay=%s prev=%s", o.Name, o.Spec.Attempt, delay, o.Spec.PreviousNode)
			if o.Spec.JobUID != old.Spec.JobUID {
				s += " jobUID=" + o.Spec.JobUID
			}
			if len(o.Status.Events) > 0 {
				ev := o.Status.Events[len(o.Status.Events)-1]
				s += fmt.Sprintf(" (%s: %s)", ev.Reason, ev.Message)
			}
			return s
		}
		var parts []string
		if o.Spec.DesiredStatus != old.Spec.DesiredStatus {
			parts = append(parts, fmt.Sprintf("stop %s (%s)", o.Name, o.Spec.DesiredReason))
		}
		if o.Status.ClientStatus != old.Status.ClientStatus {
			parts = append(parts, fmt.Sprintf("%s %s", o.Status.ClientStatus, o.Name))
		}
		if len(parts) == 0 {
			return "update " + o.Name
		}
		return strings.Join(parts, ", ")
	}
	return describeOp(op)
}

// counter returns deterministic UIDs: uid-1, uid-2, ...
func counter() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("uid-%d", n) }
}
