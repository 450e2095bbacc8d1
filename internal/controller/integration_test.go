package controller

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
	"github.com/herd-project/herd/internal/registry/registrytest"
)

// TestRegistryIntegration runs the controllers on the real registry over an
// in-process herd store: a job gets its allocations, a silent node's
// allocations are replaced, and a deleted job's allocations are stopped and
// collected.
func TestRegistryIntegration(t *testing.T) {
	reg, _ := registrytest.New(t, registry.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	commit := func(ops ...registry.Op) {
		t.Helper()
		if _, err := reg.Commit(ctx, ops...); err != nil {
			t.Fatalf("commit %v: %v", describeOps(ops), err)
		}
	}
	allocs := func() map[string]*api.Allocation {
		out := map[string]*api.Allocation{}
		for _, a := range reg.Snapshot().Allocs {
			out[a.Name] = a
		}
		return out
	}
	for _, n := range []string{"n1", "n2"} {
		commit(registry.Upsert(newNode(n, api.NodeReady, api.Active)), registry.PutHeartbeat(n, registry.Heartbeat{AgentID: n}))
	}
	job := newJob("web", api.JobService, 2)
	job.UID, job.ResourceVersion = "", ""
	commit(registry.Create(job))

	// The controllers run on a fake clock; the registry on the real one.
	clock := clockwork.NewFakeClockAt(time.Now())
	startRun(t, Config{Registry: reg, Clock: clock, Logger: quietLogger()})

	eventually(t, "two allocations", func() bool { return len(allocs()) == 2 })
	uids := map[string]string{}
	for name, a := range allocs() {
		c := *a
		c.Spec.Node = "n1"
		c.Status.ClientStatus = api.ClientRunning
		commit(registry.Update(&c))
		uids[name] = c.UID
	}
	eventually(t, "the job running", func() bool {
		j := reg.Snapshot().Jobs[registry.Key(api.DefaultNamespace, "web")]
		return j.Status.Phase == api.JobRunning && j.Status.Groups["g"].Running == 2
	})

	eventually(t, "the allocations of the silent n1 replaced", func() bool {
		commit(registry.PutHeartbeat("n2", registry.Heartbeat{AgentID: "n2"}))
		clock.Advance(200 * time.Millisecond)
		for name, a := range allocs() {
			if a.UID == uids[name] || a.Spec.PreviousNode != "n1" || a.Status.ClientStatus != api.ClientPending {
				return false
			}
		}
		return true
	})
	if n1 := reg.Snapshot().Nodes["n1"]; n1.Status.Status != api.NodeDown {
		t.Errorf("n1 = %+v", n1.Status)
	}

	j := reg.Snapshot().Jobs[registry.Key(api.DefaultNamespace, "web")]
	commit(registry.Delete(registry.Jobs, j.Namespace, j.Name, j.ResourceVersion))
	eventually(t, "the deleted job's allocations collected", func() bool { return len(allocs()) == 0 })

	reasons := map[string]bool{}
	for _, ev := range reg.Events() {
		reasons[ev.Reason] = true
	}
	for _, want := range []string{"AllocationsCreated", "NodeDown", "Replaced", "Stopping"} {
		if !reasons[want] {
			t.Errorf("no %s event among %v", want, reasons)
		}
	}
}
