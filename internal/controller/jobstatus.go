package controller

import (
	"fmt"

	"github.com/herd-project/herd/api"
)

// jobStatus computes a job's status from its allocations (by name, any
// incarnation; only the job's current incarnation counts):
//   - failed: a batch allocation that is still wanted failed;
//   - complete: every wanted allocation of a batch job completed;
//   - running: an allocation runs (or, for batch, has completed);
//   - pending: nothing runs yet.
func jobStatus(job *api.Job, allocs map[string]*api.Allocation) api.JobStatus {
	batch := job.Spec.Type == api.JobBatch
	groups := map[string]*api.GroupSummary{}
	for _, g := range job.Spec.Groups {
		if _, dup := groups[g.Name]; !dup {
			groups[g.Name] = &api.GroupSummary{Desired: max(g.Count, 0)}
		}
	}
	active := false
	for _, name := range sortedKeys(allocs) {
		a := allocs[name]
		if a == nil || a.Spec.JobUID != job.UID {
			continue
		}
		sum := groups[a.Spec.Group]
		if sum == nil {
			continue
		}
		switch a.Status.ClientStatus {
		case api.ClientRunning:
			sum.Running++
			active = true
		case api.ClientComplete:
			sum.Complete++
			active = active || batch
		case api.ClientFailed:
			sum.Failed++
		case api.ClientLost:
			sum.Lost++
		default:
			sum.Pending++
		}
	}

	var status api.JobStatus
	if len(groups) > 0 {
		status.Groups = make(map[string]api.GroupSummary, len(groups))
		for name, sum := range groups {
			status.Groups[name] = *sum
		}
	}
	if batch {
		failed, allComplete := wantedOutcome(job, allocs)
		switch {
		case failed != nil:
			status.Phase = api.JobFailed
			status.Message = describeFailure(failed)
			return status
		case allComplete:
			status.Phase = api.JobComplete
			return status
		}
	}
	status.Phase = api.JobPending
	if active {
		status.Phase = api.JobRunning
	}
	return status
}

// wantedOutcome looks at the allocations a batch job wants (index below its
// group's count): the first one that failed, and whether all completed.
func wantedOutcome(job *api.Job, allocs map[string]*api.Allocation) (failed *api.Allocation, allComplete bool) {
	allComplete = true
	seen := map[string]bool{}
	for _, g := range job.Spec.Groups {
		if seen[g.Name] {
			continue
		}
		seen[g.Name] = true
		for i := 0; i < g.Count; i++ {
			a := allocs[api.AllocName(job.Name, g.Name, i)]
			if a == nil || a.Spec.JobUID != job.UID {
				allComplete = false
				continue
			}
			switch a.Status.ClientStatus {
			case api.ClientComplete:
			case api.ClientFailed:
				allComplete = false
				if failed == nil && a.Spec.DesiredStatus != api.DesiredStop {
					failed = a
				}
			default:
				allComplete = false
			}
		}
	}
	return failed, allComplete
}

// describeFailure names a failed allocation and how its first failed task
// ended: "allocation web.web[1] failed: task main exited with code 3".
func describeFailure(a *api.Allocation) string {
	for _, name := range sortedKeys(a.Status.Tasks) {
		t := a.Status.Tasks[name]
		switch {
		case t.ExitCode != nil && *t.ExitCode != 0:
			return fmt.Sprintf("allocation %s failed: task %s exited with code %d", a.Name, name, *t.ExitCode)
		case t.Signal != "":
			return fmt.Sprintf("allocation %s failed: task %s was killed by %s", a.Name, name, t.Signal)
		case t.Failed && t.Message != "":
			return fmt.Sprintf("allocation %s failed: task %s: %s", a.Name, name, t.Message)
		case t.Failed:
			return fmt.Sprintf("allocation %s failed: task %s failed", a.Name, name)
		}
	}
	return fmt.Sprintf("allocation %s failed", a.Name)
}

// statusEqual compares job statuses, treating a nil and an empty Groups map
// alike (the store's JSON drops an empty map).
func statusEqual(a, b api.JobStatus) bool {
	if a.Phase != b.Phase || a.Message != b.Message || len(a.Groups) != len(b.Groups) {
		return false
	}
	for name, sa := range a.Groups {
		if sb, ok := b.Groups[name]; !ok || sa != sb {
			return false
		}
	}
	return true
}
