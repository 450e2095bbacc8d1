package agent

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/herd-project/herd/api"
)

// runnerView is what reconcile needs to know of an allocation incarnation the
// agent holds (running, stopping or finished).
type runnerView struct {
	UID       string
	Resources api.Resources
	// Active says some task may still run, so the resources are held.
	Active bool
	// Stopping says a stop was requested and the tasks are being killed.
	Stopping bool
	// Detached says the server rejected a report of it with a conflict:
	// the allocation was replaced and is no longer this node's to run.
	Detached bool
}

// reconcileInput is the desired state (the allocations the server assigns to
// this node) and the actual state (what the agent runs).
type reconcileInput struct {
	Node    string
	Desired []*api.Allocation
	Runners map[string]runnerView // by allocation UID
	// Allocatable is what the node offers; ReservedPorts are host ports
	// that no allocation may take.
	Allocatable   api.Resources
	ReservedPorts []int
	Drivers       map[string]bool
}

// stopAction stops the tasks of an incarnation the agent runs.
type stopAction struct {
	UID string
	// Report says the allocation is still this node's and wanted stopped:
	// once its tasks ended, report it complete.
	Report bool
	Reason string
}

// rejection refuses an allocation the node cannot run.
type rejection struct {
	Alloc   *api.Allocation
	Message string
}

// plan is what the agent does to bring the actual state to the desired one.
type plan struct {
	// Start runs allocations that passed admission.
	Start []*api.Allocation
	// Reject reports allocations failed that the node cannot run.
	Reject []rejection
	// Finish reports complete allocations that are wanted stopped, have no
	// tasks here and were not reported terminal (for example after an agent
	// restart).
	Finish []*api.Allocation
	// Stop kills the tasks of incarnations that are to stop.
	Stop []stopAction
	// Forget drops finished incarnations that left the node's view: their
	// driver state and directories are removed.
	Forget []string
	// Deferred names allocations that fit only once stopping ones have
	// freed their resources; a later pass starts them.
	Deferred []string
}

// reconcile compares desired and actual state and returns what to do. It is
// pure: the caller executes the plan.
func reconcile(in reconcileInput) plan {
	var p plan
	desired := map[string]*api.Allocation{}
	for _, a := range in.Desired {
		if a.Spec.Node == in.Node {
			desired[a.UID] = a
		}
	}

	// Incarnations we hold: stop what is no longer wanted, forget what
	// finished and left our view.
	stopping := map[string]bool{}
	for _, uid := range sortedKeys(in.Runners) {
		r := in.Runners[uid]
		a := desired[uid]
		switch {
		case a == nil || r.Detached:
			if r.Active && !r.Stopping {
				p.Stop = append(p.Stop, stopAction{UID: uid, Reason: "allocation was replaced or removed from this node"})
				stopping[uid] = true
			}
			if !r.Active && a == nil {
				p.Forget = append(p.Forget, uid)
			}
		case a.Spec.DesiredStatus == api.DesiredStop && r.Active && !r.Stopping:
			reason := a.Spec.DesiredReason
			if reason == "" {
				reason = "stop requested"
			}
			p.Stop = append(p.Stop, stopAction{UID: uid, Report: true, Reason: reason})
			stopping[uid] = true
		}
		if r.Stopping {
			stopping[uid] = true
		}
	}

	// Resources held by incarnations that keep running, and by those that
	// are stopping (freed soon).
	var committed, freeing api.Resources
	for uid, r := range in.Runners {
		switch {
		case !r.Active:
		case stopping[uid]:
			freeing = freeing.Add(r.Resources)
		default:
			committed = committed.Add(r.Resources)
		}
	}
	usedPorts := map[int]bool{}
	for _, port := range in.ReservedPorts {
		usedPorts[port] = true
	}
	for _, port := range committed.Ports {
		usedPorts[port.Port] = true
	}
	freeingPorts := map[int]bool{}
	for _, port := range freeing.Ports {
		freeingPorts[port.Port] = true
	}

	// Allocations we do not hold: admit and start, reject, or finish.
	candidates := make([]*api.Allocation, 0, len(desired))
	for uid, a := range desired {
		if _, held := in.Runners[uid]; !held {
			candidates = append(candidates, a)
		}
	}
	slices.SortFunc(candidates, func(x, y *api.Allocation) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	for _, a := range candidates {
		if a.Status.ClientStatus.Terminal() {
			continue // finished earlier; never run an incarnation twice
		}
		if a.Spec.DesiredStatus == api.DesiredStop {
			p.Finish = append(p.Finish, a)
			continue
		}
		if msg := checkAllocation(a, in.Drivers); msg != "" {
			p.Reject = append(p.Reject, rejection{Alloc: a, Message: "rejected by node: " + msg})
			continue
		}
		need := a.Spec.GroupSpec.GroupResources()
		if msg := overCommit(need, committed, in.Allocatable, usedPorts); msg != "" {
			p.Reject = append(p.Reject, rejection{Alloc: a, Message: "rejected by node: " + msg})
			continue
		}
		if overCommit(need, committed.Add(freeing), in.Allocatable, usedPorts) != "" || portsIn(need, freeingPorts) {
			p.Deferred = append(p.Deferred, a.UID)
			continue
		}
		committed = committed.Add(need)
		for _, port := range need.Ports {
			usedPorts[port.Port] = true
		}
		p.Start = append(p.Start, a)
	}
	return p
}

// checkAllocation returns why the node cannot run a, or "". Names become
// directory names, so they are checked here too.
func checkAllocation(a *api.Allocation, drivers map[string]bool) string {
	if problem := checkPathName(a.UID); problem != "" {
		return "allocation uid " + problem
	}
	g := &a.Spec.GroupSpec
	if len(g.Tasks) == 0 {
		return "group has no tasks"
	}
	seen := map[string]bool{}
	for _, t := range g.Tasks {
		if problem := api.CheckName(t.Name); problem != "" {
			return fmt.Sprintf("task name %q %s", t.Name, problem)
		}
		if seen[t.Name] {
			return fmt.Sprintf("duplicate task name %q", t.Name)
		}
		seen[t.Name] = true
		if !drivers[t.Driver] {
			return fmt.Sprintf("task %s: driver %q is not available (have: %s)", t.Name, t.Driver, strings.Join(sortedKeys(drivers), ", "))
		}
	}
	return ""
}

// checkPathName returns a problem with a name used as a directory name, or "".
func checkPathName(s string) string {
	switch {
	case s == "":
		return "is empty"
	case s == "." || s == ".." || strings.ContainsAny(s, `/\`+"\x00"):
		return fmt.Sprintf("%q cannot be used as a directory name", s)
	}
	return ""
}

// overCommit says which resource need would over-commit when added to used,
// or "".
func overCommit(need, used, allocatable api.Resources, usedPorts map[int]bool) string {
	if need.Memory > 0 && used.Memory+need.Memory > allocatable.Memory {
		return fmt.Sprintf("would over-commit memory (requested %s, %s in use of %s allocatable)",
			formatBytes(need.Memory), formatBytes(used.Memory), formatBytes(allocatable.Memory))
	}
	if need.CPU > 0 && used.CPU+need.CPU > allocatable.CPU {
		return fmt.Sprintf("would over-commit cpu (requested %dm, %dm in use of %dm allocatable)",
			need.CPU, used.CPU, allocatable.CPU)
	}
	for _, port := range need.Ports {
		if usedPorts[port.Port] {
			return fmt.Sprintf("port %d (%s) is already in use on this node", port.Port, port.Name)
		}
	}
	return ""
}

func portsIn(r api.Resources, ports map[int]bool) bool {
	for _, port := range r.Ports {
		if ports[port.Port] {
			return true
		}
	}
	return false
}

// formatBytes writes n in the largest binary unit that keeps it readable.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v, i := float64(n)/unit, 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	s := fmt.Sprintf("%.1f", v)
	s = strings.TrimSuffix(s, ".0")
	return s + units[i]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
