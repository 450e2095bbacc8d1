package scheduler

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/herd-project/herd/api"
)

// filter rejects nodes that cannot take an allocation. Check returns a
// short reason ("draining", "lacked memory"), or "" when the node passes.
// Equal reasons are counted together in placement failures, so a reason
// names the problem, not the node.
type filter interface {
	Name() string
	Check(a *ask, n *nodeState) string
}

// defaultFilters run in this order; a node is rejected by the first one
// that fails, so cheap and telling checks come first.
var defaultFilters = []filter{
	readyFilter{},
	availabilityFilter{},
	driverFilter{},
	resourcesFilter{},
	portsFilter{},
	constraintsFilter{},
}

// rejectReason returns the reason of the first filter that rejects n, or "".
func rejectReason(filters []filter, a *ask, n *nodeState) string {
	for _, f := range filters {
		if reason := f.Check(a, n); reason != "" {
			return reason
		}
	}
	return ""
}

// readyFilter rejects nodes whose agent is not heard from.
type readyFilter struct{}

func (readyFilter) Name() string { return "ready" }

func (readyFilter) Check(_ *ask, n *nodeState) string {
	if n.node.Status.Status != api.NodeReady {
		return "down"
	}
	return ""
}

// availabilityFilter rejects nodes the operator drains or pauses. An unset
// availability is active.
type availabilityFilter struct{}

func (availabilityFilter) Name() string { return "availability" }

func (availabilityFilter) Check(_ *ask, n *nodeState) string {
	switch av := n.node.Spec.Availability; av {
	case "", api.Active:
		return ""
	case api.Drain:
		return "draining"
	case api.Pause:
		return "paused"
	default:
		return "availability " + string(av)
	}
}

// driverFilter rejects nodes lacking a driver one of the tasks needs.
type driverFilter struct{}

func (driverFilter) Name() string { return "driver" }

func (driverFilter) Check(a *ask, n *nodeState) string {
	for _, d := range a.drivers {
		if !slices.Contains(n.node.Status.Drivers, d) {
			return "missing driver " + d
		}
	}
	return ""
}

// resourcesFilter rejects nodes whose allocatable CPU or memory cannot hold
// what their allocations hold plus the request.
type resourcesFilter struct{}

func (resourcesFilter) Name() string { return "resources" }

func (resourcesFilter) Check(a *ask, n *nodeState) string {
	allocatable := n.node.Status.Allocatable
	if n.cpu+a.request.CPU > allocatable.CPU {
		return "lacked cpu"
	}
	if n.memory+a.request.Memory > allocatable.Memory {
		return "lacked memory"
	}
	return ""
}

// portsFilter rejects nodes where a requested static port is taken.
type portsFilter struct{}

func (portsFilter) Name() string { return "ports" }

func (portsFilter) Check(a *ask, n *nodeState) string {
	for _, p := range a.request.Ports {
		if n.ports[p.Port] {
			return "port " + strconv.Itoa(p.Port) + " in use"
		}
	}
	return ""
}

// constraintsFilter rejects nodes that fail one of the group's constraints.
type constraintsFilter struct{}

func (constraintsFilter) Name() string { return "constraints" }

func (constraintsFilter) Check(a *ask, n *nodeState) string {
	for i, c := range a.alloc.Spec.GroupSpec.Constraints {
		if !constraintHolds(c, n.node) {
			return a.constraintReasons[i]
		}
	}
	return ""
}

// constraintReason is the rejection reason of a failed constraint.
func constraintReason(c api.Constraint) string {
	return fmt.Sprintf("constraint %s %s %s", c.Attribute, c.Operator, c.Value)
}

// constraintHolds evaluates c on node. A missing attribute fails == and
// passes !=; an unknown operator fails.
func constraintHolds(c api.Constraint, node *api.Node) bool {
	value, ok := nodeAttribute(node, c.Attribute)
	switch c.Operator {
	case api.OpEqual:
		return ok && value == c.Value
	case api.OpNotEqual:
		return !ok || value != c.Value
	}
	return false
}

// nodeAttribute reads "attr.<name>" from the node's attributes ("attr.name"
// is the node's name) and "label.<key>" from its labels.
func nodeAttribute(node *api.Node, attribute string) (string, bool) {
	if name, ok := strings.CutPrefix(attribute, "attr."); ok {
		if name == api.AttrName {
			return node.Name, true
		}
		v, ok := node.Status.Attributes[name]
		return v, ok
	}
	if key, ok := strings.CutPrefix(attribute, "label."); ok {
		v, ok := node.Labels[key]
		return v, ok
	}
	return "", false
}
