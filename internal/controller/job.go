package controller

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// Reasons an allocation is asked to stop (AllocSpec.DesiredReason).
const (
	reasonScaledDown   = "scaled down"
	reasonGroupRemoved = "group removed"
	reasonJobDeleted   = "job deleted"
	reasonJobReplaced  = "job replaced"
	reasonJobUpdated   = "job updated"
)

// jobController creates, stops and replaces allocations so that every job
// has its groups' counts of allocations running its current spec, and keeps
// each job's status.
type jobController struct {
	reg     Registry
	planner jobPlanner
}

func newJobController(cfg Config) *jobController {
	return &jobController{
		reg: cfg.Registry,
		planner: jobPlanner{
			baseDelay: cfg.RescheduleBaseDelay,
			maxDelay:  cfg.RescheduleMaxDelay,
			newUID:    uuid.NewString,
		},
	}
}

func (c *jobController) name() string { return "job" }

// Nodes matter because a draining node's allocations move.
func (c *jobController) kinds() []registry.Kind {
	return []registry.Kind{registry.Jobs, registry.Allocs, registry.Nodes}
}

func (c *jobController) plan(now time.Time) ([][]registry.Op, time.Time) {
	return c.planner.plan(c.reg.Snapshot(), now), time.Time{}
}

// jobPlanner is the job controller's pure core.
type jobPlanner struct {
	// baseDelay and maxDelay bound the placement delay of a replaced
	// failed service allocation: base doubled per attempt, at most max.
	baseDelay, maxDelay time.Duration
	// newUID names a new incarnation of an allocation.
	newUID func() string
}

// jobRef names a job, whether or not it exists.
type jobRef struct{ namespace, name string }

// plan returns the commits that bring allocations and job statuses in snap
// in line with the jobs at time now: one job's changes per commit (split at
// registry.MaxOps), so that a conflict on one job does not hold up others.
func (p jobPlanner) plan(snap *registry.Snapshot, now time.Time) [][]registry.Op {
	if snap == nil {
		return nil
	}
	owned := map[jobRef]map[string]*api.Allocation{}
	for _, a := range snap.Allocs {
		if a == nil {
			continue
		}
		ref := jobRef{a.Namespace, a.Spec.Job}
		if owned[ref] == nil {
			owned[ref] = map[string]*api.Allocation{}
		}
		owned[ref][a.Name] = a
	}
	var commits [][]registry.Op
	for _, key := range sortedKeys(snap.Jobs) {
		job := snap.Jobs[key]
		if job == nil {
			continue
		}
		ref := jobRef{job.Namespace, job.Name}
		jp := p.newPass(snap, now, ref, job, owned[ref])
		jp.reconcileJob()
		commits = append(commits, pack(jp.units)...)
		delete(owned, ref)
	}
	// What is left belongs to jobs that no longer exist.
	refs := make([]jobRef, 0, len(owned))
	for ref := range owned {
		refs = append(refs, ref)
	}
	sortRefs(refs)
	for _, ref := range refs {
		jp := p.newPass(snap, now, ref, nil, owned[ref])
		jp.reconcileOrphans()
		commits = append(commits, pack(jp.units)...)
	}
	return commits
}

func sortRefs(refs []jobRef) {
	slices.SortFunc(refs, func(a, b jobRef) int {
		if c := strings.Compare(a.namespace, b.namespace); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
}

// jobPass plans one job (or the leftovers of a deleted one).
type jobPass struct {
	p    jobPlanner
	snap *registry.Snapshot
	now  time.Time
	ref  jobRef
	job  *api.Job // nil for a deleted job
	// owned are the allocations naming the job, of any incarnation, by name.
	owned map[string]*api.Allocation
	// after is owned with this pass's changes applied, for the status.
	after map[string]*api.Allocation
	units []unit
	// created lists the allocations created, for the job's event.
	created []string
	// stopped lists the allocations asked to stop, by reason.
	stopped map[string][]string
}

func (p jobPlanner) newPass(snap *registry.Snapshot, now time.Time, ref jobRef, job *api.Job, owned map[string]*api.Allocation) *jobPass {
	after := make(map[string]*api.Allocation, len(owned))
	for name, a := range owned {
		after[name] = a
	}
	return &jobPass{p: p, snap: snap, now: now, ref: ref, job: job, owned: owned, after: after, stopped: map[string][]string{}}
}

// reconcileJob plans an existing job: every wanted index has an allocation
// of the current incarnation running the current group spec, nothing else
// runs, and the status says so.
func (jp *jobPass) reconcileJob() {
	wanted := map[string]bool{}
	seenGroups := map[string]bool{}
	for gi := range jp.job.Spec.Groups {
		g := &jp.job.Spec.Groups[gi]
		if seenGroups[g.Name] {
			continue // invalid job; the first group of a name wins
		}
		seenGroups[g.Name] = true
		for i := 0; i < g.Count; i++ {
			name := api.AllocName(jp.job.Name, g.Name, i)
			wanted[name] = true
			jp.reconcileWanted(g, i, name)
		}
	}
	for _, name := range sortedKeys(jp.owned) {
		if wanted[name] {
			continue
		}
		a := jp.owned[name]
		reason := reasonJobDeleted
		if a.Spec.JobUID == jp.job.UID {
			reason = reasonGroupRemoved
			if seenGroups[a.Spec.Group] {
				reason = reasonScaledDown
			}
		}
		jp.stop(a, reason)
	}
	jp.recordJobEvents()
	jp.writeStatus()
}

// reconcileOrphans stops the allocations of a job that no longer exists.
func (jp *jobPass) reconcileOrphans() {
	for _, name := range sortedKeys(jp.owned) {
		jp.stop(jp.owned[name], reasonJobDeleted)
	}
	jp.recordJobEvents()
}

// reconcileWanted plans the index-th allocation of group g.
func (jp *jobPass) reconcileWanted(g *api.Group, index int, name string) {
	a := jp.snap.Allocs[registry.Key(jp.ref.namespace, name)]
	switch {
	case a == nil:
		jp.create(g, index, name)
	case a.Spec.Job != jp.job.Name:
		// The key is held by an object that does not name this job, which
		// valid names rule out; leave it alone rather than fight over it.
	case a.Spec.JobUID != jp.job.UID:
		// An allocation of an earlier job of the same name.
		switch {
		case stoppedOrUnplaced(a):
			fresh := jp.newIncarnation(a, g, reasonJobReplaced, 0, time.Time{}, api.EventNormal)
			fresh.Status.Events = fresh.Status.Events[len(fresh.Status.Events)-1:]
			jp.update(fresh, a)
		case a.Spec.DesiredStatus != api.DesiredStop:
			jp.stop(a, reasonJobReplaced)
		}
	case a.Spec.DesiredStatus == api.DesiredStop:
		// Stopped for an update or a scale down, and wanted again: run the
		// current spec once the old tasks are gone.
		if stoppedOrUnplaced(a) {
			why := "wanted again after: " + a.Spec.DesiredReason
			if jp.specChanged(a, g) {
				why = reasonJobUpdated
			}
			jp.update(jp.newIncarnation(a, g, why, 0, time.Time{}, api.EventNormal), a)
		}
	default:
		jp.reconcileRunning(a, g)
	}
}

// reconcileRunning plans an allocation of the current incarnation that is
// meant to run.
func (jp *jobPass) reconcileRunning(a *api.Allocation, g *api.Group) {
	status := a.Status.ClientStatus
	batch := jp.job.Spec.Type == api.JobBatch
	switch {
	case batch && status == api.ClientComplete:
		// Done; a batch allocation runs once.
	case jp.specChanged(a, g):
		if stoppedOrUnplaced(a) {
			jp.update(jp.newIncarnation(a, g, reasonJobUpdated, 0, time.Time{}, api.EventNormal), a)
		} else {
			jp.stop(a, reasonJobUpdated)
		}
	case status == api.ClientFailed && batch:
		// The job fails; see jobStatus.
	case status == api.ClientFailed, status == api.ClientComplete:
		delay := doubled(jp.p.baseDelay, a.Spec.Attempt, jp.p.maxDelay)
		why := fmt.Sprintf("%s; placement delayed %s", describeFailure(a), delay)
		if status == api.ClientComplete {
			why = fmt.Sprintf("a service allocation completed; placement delayed %s", delay)
		}
		jp.update(jp.newIncarnation(a, g, why, a.Spec.Attempt+1, jp.now.Add(delay), api.EventWarning), a)
	case status == api.ClientLost:
		why := "allocation lost"
		if a.Spec.Node != "" {
			why = fmt.Sprintf("allocation lost with node %s", a.Spec.Node)
		}
		jp.update(jp.newIncarnation(a, g, why, a.Spec.Attempt+1, time.Time{}, api.EventWarning), a)
	case status.Terminal() || a.Spec.Node == "":
	default:
		node := jp.snap.Nodes[a.Spec.Node]
		switch {
		case node == nil:
			why := fmt.Sprintf("node %s no longer exists", a.Spec.Node)
			jp.update(jp.newIncarnation(a, g, why, a.Spec.Attempt+1, time.Time{}, api.EventWarning), a)
		case node.Spec.Availability == api.Drain:
			jp.update(jp.newIncarnation(a, g, "node draining", a.Spec.Attempt+1, time.Time{}, api.EventNormal), a)
		}
	}
}

// stoppedOrUnplaced reports whether no task of a runs or will run under its
// current incarnation without the control plane's say: it is terminal, or
// no node has it yet.
func stoppedOrUnplaced(a *api.Allocation) bool {
	return a.Status.ClientStatus.Terminal() || a.Spec.Node == ""
}

// specChanged reports whether a runs something other than the job's group
// g asks for now. The count is not part of what an allocation runs.
func (jp *jobPass) specChanged(a *api.Allocation, g *api.Group) bool {
	if a.Spec.JobType != jp.job.Spec.Type {
		return true
	}
	return !cmp.Equal(a.Spec.GroupSpec, *g, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(api.Group{}, "Count"))
}

func (jp *jobPass) create(g *api.Group, index int, name string) {
	a := &api.Allocation{
		Meta: api.Meta{Name: name, Namespace: jp.job.Namespace},
		Spec: api.AllocSpec{
			Job: jp.job.Name, Group: g.Name, Index: index,
			JobUID: jp.job.UID, JobVersion: jp.job.ResourceVersion,
			GroupSpec: cloneGroup(*g), JobType: jp.job.Spec.Type,
			DesiredStatus: api.DesiredRun,
		},
		Status: api.AllocStatus{ClientStatus: api.ClientPending, UpdatedAt: jp.now},
	}
	jp.units = append(jp.units, unit{registry.Create(a)})
	jp.after[name] = a
	jp.created = append(jp.created, name)
}

// newIncarnation replaces a in place: same name, new UID, the job's current
// group spec, no node, pending, placed no earlier than notBefore. The
// replacement keeps a's events and adds one saying why.
func (jp *jobPass) newIncarnation(a *api.Allocation, g *api.Group, why string, attempt int, notBefore time.Time, typ api.EventType) *api.Allocation {
	n := *a
	n.UID = jp.p.newUID()
	n.CreatedAt = jp.now
	prev := a.Spec.Node
	if prev == "" {
		prev = a.Spec.PreviousNode
	}
	n.Spec = api.AllocSpec{
		Job: jp.job.Name, Group: g.Name, Index: a.Spec.Index,
		JobUID: jp.job.UID, JobVersion: jp.job.ResourceVersion,
		GroupSpec: cloneGroup(*g), JobType: jp.job.Spec.Type,
		DesiredStatus: api.DesiredRun,
		Attempt:       attempt, NotBefore: notBefore, PreviousNode: prev,
	}
	ev := allocEvent(a, jp.now, typ, "Replaced", why, sourceJobController)
	n.Status = api.AllocStatus{
		ClientStatus: api.ClientPending,
		Events:       withEvent(a.Status.Events, ev),
		UpdatedAt:    jp.now,
	}
	return &n
}

// update writes n over old (conditional on old's version) with an event
// recording the change when n is a new incarnation.
func (jp *jobPass) update(n, old *api.Allocation) {
	u := unit{registry.Update(n)}
	if n.UID != old.UID && len(n.Status.Events) > 0 {
		u = append(u, registry.RecordEvent(n.Status.Events[len(n.Status.Events)-1]))
	}
	jp.units = append(jp.units, u)
	jp.after[n.Name] = n
}

// stop asks a to stop for reason, if it is not already asked to. An
// allocation no node has taken needs no agent to stop: it is marked
// complete at once.
func (jp *jobPass) stop(a *api.Allocation, reason string) {
	n := *a
	changed := false
	if a.Spec.DesiredStatus != api.DesiredStop {
		n.Spec.DesiredStatus = api.DesiredStop
		n.Spec.DesiredReason = reason
		changed = true
	}
	if a.Spec.Node == "" && !a.Status.ClientStatus.Terminal() {
		n.Status.ClientStatus = api.ClientComplete
		n.Status.PlacementFailure = ""
		n.Status.UpdatedAt = jp.now
		ev := allocEvent(a, jp.now, api.EventNormal, "Stopped", "stopped before placement: "+n.Spec.DesiredReason, sourceJobController)
		n.Status.Events = withEvent(a.Status.Events, ev)
		changed = true
	}
	if !changed {
		return
	}
	jp.units = append(jp.units, unit{registry.Update(&n)})
	jp.after[n.Name] = &n
	if a.Spec.DesiredStatus != api.DesiredStop {
		jp.stopped[reason] = append(jp.stopped[reason], a.Name)
	}
}

// recordJobEvents records one event per kind of action taken on the job's
// allocations in this pass.
func (jp *jobPass) recordJobEvents() {
	var u unit
	add := func(reason, what string, names []string) {
		if len(names) == 0 {
			return
		}
		u = append(u, registry.RecordEvent(api.Event{
			Time: jp.now, Type: api.EventNormal, Kind: api.KindJob,
			Namespace: jp.ref.namespace, Name: jp.ref.name,
			Reason:  reason,
			Message: fmt.Sprintf("%s %s: %s", what, plural(len(names), "allocation"), nameList(names)),
			Source:  sourceJobController,
		}))
	}
	add("AllocationsCreated", "created", jp.created)
	for _, reason := range sortedKeys(jp.stopped) {
		add("Stopping", reason+": stopping", jp.stopped[reason])
	}
	if len(u) > 0 {
		jp.units = append(jp.units, u)
	}
}

// writeStatus updates the job's status if this pass changes it, with an
// event when the job completes or fails.
func (jp *jobPass) writeStatus() {
	status := jobStatus(jp.job, jp.after)
	if statusEqual(status, jp.job.Status) {
		return
	}
	n := *jp.job
	n.Status = status
	u := unit{registry.Update(&n)}
	if status.Phase != jp.job.Status.Phase {
		switch status.Phase {
		case api.JobFailed:
			u = append(u, registry.RecordEvent(api.Event{
				Time: jp.now, Type: api.EventWarning, Kind: api.KindJob, Namespace: jp.job.Namespace, Name: jp.job.Name,
				Reason: "JobFailed", Message: status.Message, Source: sourceJobController,
			}))
		case api.JobComplete:
			u = append(u, registry.RecordEvent(api.Event{
				Time: jp.now, Type: api.EventNormal, Kind: api.KindJob, Namespace: jp.job.Namespace, Name: jp.job.Name,
				Reason: "JobComplete", Message: "every allocation completed", Source: sourceJobController,
			}))
		}
	}
	jp.units = append(jp.units, u)
}
