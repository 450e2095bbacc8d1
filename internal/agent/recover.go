package agent

import (
	"context"
	"errors"
	"os"
	"sync"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

// sortRecovered splits the tasks found by the drivers into those to
// re-attach to, by allocation UID and task name, and those to stop and
// destroy. A task is kept when the first list has its incarnation on this
// node, wanted running and not reported terminal, and the group has a task
// of that name with that driver; every other task is an orphan.
func sortRecovered(node string, listed []*api.Allocation, found []recoveredTask) (keep map[string]map[string]recoveredTask, drop []recoveredTask) {
	byUID := map[string]*api.Allocation{}
	for _, a := range listed {
		if a.Spec.Node == node {
			byUID[a.UID] = a
		}
	}
	keep = map[string]map[string]recoveredTask{}
	for _, rt := range found {
		id := rt.handle.ID
		a := byUID[id.AllocUID]
		if a == nil || a.Spec.DesiredStatus != api.DesiredRun || a.Status.ClientStatus.Terminal() {
			drop = append(drop, rt)
			continue
		}
		var task *api.Task
		for i := range a.Spec.GroupSpec.Tasks {
			if t := &a.Spec.GroupSpec.Tasks[i]; t.Name == id.Task && t.Driver == rt.driver.Name() {
				task = t
			}
		}
		if task == nil || keep[id.AllocUID][id.Task].handle != nil {
			drop = append(drop, rt)
			continue
		}
		if keep[id.AllocUID] == nil {
			keep[id.AllocUID] = map[string]recoveredTask{}
		}
		keep[id.AllocUID][id.Task] = rt
	}
	return keep, drop
}

// recoverTasks asks every driver for the tasks of earlier agent processes,
// stops and destroys the orphans, and returns the tasks to re-attach to.
func (a *Agent) recoverTasks(ctx context.Context, listed []*api.Allocation) map[string]map[string]recoveredTask {
	var found []recoveredTask
	for _, d := range a.cfg.Drivers {
		handles, err := d.Recover(ctx)
		if err != nil {
			a.log.Error("recovering tasks failed; tasks of an earlier agent run may be left running",
				"driver", d.Name(), "err", err)
			continue
		}
		for _, h := range handles {
			if h != nil {
				found = append(found, recoveredTask{handle: h, driver: d})
			}
		}
	}
	keep, drop := sortRecovered(a.cfg.Name, listed, found)
	for uid, tasks := range keep {
		for name, rt := range tasks {
			a.log.Info("re-attaching to a task of an earlier agent run", "alloc", uid, "task", name, "pid", rt.handle.PID)
		}
	}
	killTimeouts := map[driver.TaskID]api.Duration{}
	for _, al := range listed {
		for _, t := range al.Spec.GroupSpec.Tasks {
			killTimeouts[driver.TaskID{AllocUID: al.UID, Task: t.Name}] = t.KillTimeout
		}
	}
	var wg sync.WaitGroup
	for _, rt := range drop {
		id := rt.handle.ID
		timeout := killTimeouts[id]
		if timeout <= 0 {
			timeout = api.DefaultKillTimeout
		}
		a.log.Info("stopping a task of an earlier agent run that this node no longer runs", "task", id.String(), "pid", rt.handle.PID)
		wg.Go(func() {
			if err := rt.driver.Stop(ctx, id, timeout.Std()); err != nil && !errors.Is(err, driver.ErrNotFound) {
				a.log.Error("stopping an orphaned task failed", "task", id.String(), "err", err)
				return
			}
			if err := rt.driver.Destroy(ctx, id); err != nil && !errors.Is(err, driver.ErrNotFound) {
				a.log.Warn("removing an orphaned task's state failed", "task", id.String(), "err", err)
			}
		})
	}
	wg.Wait()
	return keep
}

// danglingDirs returns the allocation directories on disk whose UID is
// neither in the node's view nor held by a runner.
func danglingDirs(onDisk []string, keep map[string]bool) []string {
	var out []string
	for _, uid := range onDisk {
		if !keep[uid] {
			out = append(out, uid)
		}
	}
	return out
}

// sweep removes the directories of allocations that left the node's view
// and run nothing here; terminal allocations still listed keep theirs, so
// their logs stay readable.
func (a *Agent) sweep(desired []*api.Allocation) {
	entries, err := os.ReadDir(a.allocsDir())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("listing allocation directories failed", "err", err)
		}
		return
	}
	keep := map[string]bool{}
	for _, al := range desired {
		keep[al.UID] = true
	}
	for uid := range a.runners {
		keep[uid] = true
	}
	var onDisk []string
	for _, e := range entries {
		if e.IsDir() {
			onDisk = append(onDisk, e.Name())
		}
	}
	for _, uid := range danglingDirs(onDisk, keep) {
		a.log.Info("removing the directory of a finished allocation", "uid", uid)
		if err := os.RemoveAll(allocDir(a.cfg.DataDir, uid)); err != nil {
			a.log.Warn("removing an allocation directory failed", "uid", uid, "err", err)
		}
	}
}
