package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

func TestSortRecovered(t *testing.T) {
	exec, other := newFakeDriver(testDriver, nil), newFakeDriver("other", nil)
	found := func(d driver.Driver, uid, task string) recoveredTask {
		return recoveredTask{handle: &driver.Handle{ID: taskID(uid, task)}, driver: d}
	}
	listed := []*api.Allocation{
		testAlloc(0, "run", testNode, withTasks("a", "b"), withClientStatus(api.ClientRunning)),
		testAlloc(1, "stop", testNode, withDesired(api.DesiredStop)),
		testAlloc(2, "done", testNode, withClientStatus(api.ClientFailed)),
		testAlloc(3, "moved", "n2"),
	}
	keep, drop := sortRecovered(testNode, listed, []recoveredTask{
		found(exec, "run", "a"),
		found(exec, "run", "a"),     // duplicate
		found(other, "run", "b"),    // wrong driver
		found(exec, "run", "c"),     // not in the group
		found(exec, "stop", "main"), // wanted stopped
		found(exec, "done", "main"), // reported terminal
		found(exec, "moved", "main"),
		found(exec, "unknown", "main"),
	})
	var kept []string
	for uid, tasks := range keep {
		for name := range tasks {
			kept = append(kept, uid+"/"+name)
		}
	}
	var dropped []string
	for _, rt := range drop {
		dropped = append(dropped, rt.driver.Name()+":"+rt.handle.ID.String())
	}
	if diff := cmp.Diff([]string{"run/a"}, kept); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	want := []string{"fake:run/a", "other:run/b", "fake:run/c", "fake:stop/main", "fake:done/main", "fake:moved/main", "fake:unknown/main"}
	if diff := cmp.Diff(want, dropped); diff != "" {
		t.Errorf("dropped (-want +got):\n%s", diff)
	}
}

func TestDanglingDirs(t *testing.T) {
	got := danglingDirs([]string{"a", "b", "c"}, map[string]bool{"b": true})
	if diff := cmp.Diff([]string{"a", "c"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
