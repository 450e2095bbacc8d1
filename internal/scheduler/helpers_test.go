package scheduler

import (
	"fmt"
	"time"

	"github.com/herd-project/herd/api"
)

const gib = int64(1) << 30

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// testNode is a ready, active linux node with the exec driver, 4 cores and
// 8 GiB allocatable, changed by opts.
func testNode(name string, opts ...func(*api.Node)) *api.Node {
	n := &api.Node{
		Meta: api.Meta{Name: name},
		Spec: api.NodeSpec{Availability: api.Active},
		Status: api.NodeInfo{
			Status:      api.NodeReady,
			Attributes:  map[string]string{api.AttrOS: "linux", api.AttrArch: "amd64"},
			Allocatable: api.Resources{CPU: 4000, Memory: 8 * gib},
			Capacity:    api.Resources{CPU: 4000, Memory: 8 * gib},
			Drivers:     []string{"exec"},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func down(n *api.Node)     { n.Status.Status = api.NodeDown }
func draining(n *api.Node) { n.Spec.Availability = api.Drain }
func paused(n *api.Node)   { n.Spec.Availability = api.Pause }
func noDrivers(n *api.Node) {
	n.Status.Drivers = nil
}

func allocatable(cpu, memory int64) func(*api.Node) {
	return func(n *api.Node) { n.Status.Allocatable = api.Resources{CPU: cpu, Memory: memory} }
}

func attr(k, v string) func(*api.Node) {
	return func(n *api.Node) { n.Status.Attributes[k] = v }
}

func label(k, v string) func(*api.Node) {
	return func(n *api.Node) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
	}
}

// testAlloc is a pending allocation of group "g" of job in namespace
// default whose one exec task asks 1 core and 1 GiB, changed by opts.
func testAlloc(job string, index int, opts ...func(*api.Allocation)) *api.Allocation {
	a := &api.Allocation{
		Meta: api.Meta{
			Namespace: api.DefaultNamespace,
			Name:      api.AllocName(job, "g", index),
			UID:       fmt.Sprintf("uid-%s-%d", job, index),
		},
		Spec: api.AllocSpec{
			Job:   job,
			Group: "g",
			Index: index,
			GroupSpec: api.Group{
				Name:  "g",
				Count: 1,
				Tasks: []api.Task{{
					Name:      "t",
					Driver:    "exec",
					Config:    api.TaskConfig{Command: "/bin/true"},
					Resources: api.Resources{CPU: 1000, Memory: gib},
				}},
			},
			JobType:       api.JobService,
			DesiredStatus: api.DesiredRun,
		},
		Status: api.AllocStatus{ClientStatus: api.ClientPending},
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

func on(node string) func(*api.Allocation) {
	return func(a *api.Allocation) { a.Spec.Node = node }
}

func clientStatus(s api.ClientStatus) func(*api.Allocation) {
	return func(a *api.Allocation) { a.Status.ClientStatus = s }
}

func desired(s api.DesiredStatus) func(*api.Allocation) {
	return func(a *api.Allocation) { a.Spec.DesiredStatus = s }
}

func notBefore(t time.Time) func(*api.Allocation) {
	return func(a *api.Allocation) { a.Spec.NotBefore = t }
}

func inNamespace(ns string) func(*api.Allocation) {
	return func(a *api.Allocation) { a.Namespace = ns }
}

func inGroup(g string) func(*api.Allocation) {
	return func(a *api.Allocation) {
		a.Spec.Group = g
		a.Spec.GroupSpec.Name = g
		a.Name = api.AllocName(a.Spec.Job, g, a.Spec.Index)
	}
}

// asks sets the resources of the allocation's only task.
func asks(cpu, memory int64, ports ...int) func(*api.Allocation) {
	return func(a *api.Allocation) {
		r := api.Resources{CPU: cpu, Memory: memory}
		for _, p := range ports {
			r.Ports = append(r.Ports, api.Port{Name: fmt.Sprintf("p%d", p), Port: p})
		}
		a.Spec.GroupSpec.Tasks[0].Resources = r
	}
}

func withDriver(d string) func(*api.Allocation) {
	return func(a *api.Allocation) {
		a.Spec.GroupSpec.Tasks = append(a.Spec.GroupSpec.Tasks, api.Task{
			Name: "t" + d, Driver: d, Config: api.TaskConfig{Command: "x"},
		})
	}
}

func constraint(attribute string, op api.ConstraintOperator, value string) func(*api.Allocation) {
	return func(a *api.Allocation) {
		a.Spec.GroupSpec.Constraints = append(a.Spec.GroupSpec.Constraints,
			api.Constraint{Attribute: attribute, Operator: op, Value: value})
	}
}
