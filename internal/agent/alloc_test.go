package agent

import (
	"time"

	"github.com/herd-project/herd/api"
)

const (
	testNode   = "n1"
	testDriver = "fake"
	mib        = int64(1 << 20)
)

// testAlloc builds an allocation of job "web", group "web", with one task
// "main" on driver "fake", placed on node and wanted running.
func testAlloc(index int, uid, node string, mods ...func(*api.Allocation)) *api.Allocation {
	a := &api.Allocation{
		Meta: api.Meta{Name: api.AllocName("web", "web", index), Namespace: api.DefaultNamespace, UID: uid},
		Spec: api.AllocSpec{
			Job:     "web",
			Group:   "web",
			Index:   index,
			JobType: api.JobService,
			GroupSpec: api.Group{
				Name:  "web",
				Count: 1,
				Tasks: []api.Task{{
					Name:        "main",
					Driver:      testDriver,
					Config:      api.TaskConfig{Command: "/bin/true"},
					Resources:   api.Resources{CPU: 100, Memory: 64 * mib},
					KillTimeout: api.Duration(3 * time.Second),
				}},
				RestartPolicy: &api.RestartPolicy{Attempts: 2, Interval: api.Duration(time.Hour), Delay: api.Duration(time.Second), Mode: api.RestartFail},
			},
			Node:          node,
			DesiredStatus: api.DesiredRun,
		},
	}
	for _, m := range mods {
		m(a)
	}
	return a
}

func withMemory(m int64) func(*api.Allocation) {
	return func(a *api.Allocation) { a.Spec.GroupSpec.Tasks[0].Resources.Memory = m }
}

func withCPU(c int64) func(*api.Allocation) {
	return func(a *api.Allocation) { a.Spec.GroupSpec.Tasks[0].Resources.CPU = c }
}

func withPort(p int) func(*api.Allocation) {
	return func(a *api.Allocation) {
		a.Spec.GroupSpec.Tasks[0].Resources.Ports = []api.Port{{Name: "http", Port: p}}
	}
}

func withDesired(d api.DesiredStatus) func(*api.Allocation) {
	return func(a *api.Allocation) { a.Spec.DesiredStatus = d }
}

func withClientStatus(s api.ClientStatus) func(*api.Allocation) {
	return func(a *api.Allocation) { a.Status.ClientStatus = s }
}

func withBatch() func(*api.Allocation) {
	return func(a *api.Allocation) { a.Spec.JobType = api.JobBatch }
}

func withTasks(names ...string) func(*api.Allocation) {
	return func(a *api.Allocation) {
		base := a.Spec.GroupSpec.Tasks[0]
		a.Spec.GroupSpec.Tasks = nil
		for _, n := range names {
			t := base
			t.Name = n
			a.Spec.GroupSpec.Tasks = append(a.Spec.GroupSpec.Tasks, t)
		}
	}
}

func withPolicy(attempts int, delay time.Duration, mode api.RestartMode) func(*api.Allocation) {
	return func(a *api.Allocation) {
		a.Spec.GroupSpec.RestartPolicy = &api.RestartPolicy{Attempts: attempts, Interval: api.Duration(time.Hour), Delay: api.Duration(delay), Mode: mode}
	}
}
