package agent

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
	"github.com/herd-project/herd/internal/driver/exec"
)

// TestMain lets this test binary serve as the exec driver's task shim.
func TestMain(m *testing.M) {
	exec.RunShimIfRequested()
	os.Exit(m.Run())
}

// TestWithExecDriver runs real processes through the exec driver: start,
// logs, restart policy, an agent restart that re-attaches, and a stop.
func TestWithExecDriver(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the exec driver needs Linux")
	}
	stateDir := filepath.Join(t.TempDir(), "exec")
	newDriver := func() *exec.Driver {
		d, err := exec.New(exec.Config{StateDir: stateDir, CgroupParent: "herd-agent-test", Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	drv := newDriver()
	t.Cleanup(func() { stopEverything(t, newDriver()) })

	h := newHarness(t, func(c *Config) {
		c.Clock = clockwork.NewRealClock()
		c.Drivers = []driver.Driver{drv}
	})
	h.start()
	task := func(name string, args ...string) api.Task {
		return api.Task{
			Name: name, Driver: exec.Name, KillTimeout: api.Duration(2 * time.Second),
			Config: api.TaskConfig{Command: "/bin/sh", Args: append([]string{"-c"}, args...)},
		}
	}
	service := testAlloc(0, "s1", testNode, func(a *api.Allocation) {
		a.Spec.GroupSpec.Tasks = []api.Task{task("main", `echo "hello $HERD_TASK in $HERD_ALLOC_NAME"; trap 'echo bye; exit 0' TERM; while :; do sleep 0.05; done`)}
	})
	batch := testAlloc(1, "b1", testNode, withBatch(), withPolicy(1, 10*time.Millisecond, api.RestartFail), func(a *api.Allocation) {
		a.Spec.GroupSpec.Tasks = []api.Task{task("main", "echo try; exit 3")}
	})
	h.srv.put(service)
	h.srv.put(batch)

	h.eventually("the service runs", h.clientStatusIs(service, api.ClientRunning))
	pid := h.status(service).Tasks["main"].PID
	if pid == 0 || syscall.Kill(pid, 0) != nil {
		t.Fatalf("service pid %d is not a live process", pid)
	}
	h.eventually("the batch allocation fails after its restart", h.clientStatusIs(batch, api.ClientFailed))
	if st := h.status(batch).Tasks["main"]; st.ExitCode == nil || *st.ExitCode != 3 || st.Restarts != 1 || !st.Failed {
		t.Errorf("batch task %+v", st)
	}
	base := "http://" + h.agent.Addr() + "/v1/logs?alloc="
	h.eventually("the service's output is served", func() bool {
		_, body := get(t, base+"s1")
		return body == "hello main in web.web[0]\n"
	})
	if _, body := get(t, base+"b1"); body != "try\ntry\n" {
		t.Errorf("batch log %q", body)
	}

	// A new agent process with a new driver instance re-attaches.
	h.stop()
	drv.Close()
	if syscall.Kill(pid, 0) != nil {
		t.Fatalf("the service did not survive the agent")
	}
	h.cfg.Drivers = []driver.Driver{newDriver()}
	h.start()
	h.eventually("the new agent re-attached", func() bool { return h.hasEvent(service, EventReattached, "task main") })
	if got := h.status(service).Tasks["main"].PID; got != pid {
		t.Errorf("pid after agent restart %d, want %d", got, pid)
	}

	h.srv.update(allocKey(service), func(a *api.Allocation) { a.Spec.DesiredStatus = api.DesiredStop })
	h.eventually("the service stops", h.clientStatusIs(service, api.ClientComplete))
	if st := h.status(service).Tasks["main"]; st.ExitCode == nil || *st.ExitCode != 0 || st.Failed {
		t.Errorf("stopped service %+v, want exit 0 from its TERM trap", st)
	}
	h.eventually("the process is gone", func() bool { return syscall.Kill(pid, 0) != nil })
	base = "http://" + h.agent.Addr() + "/v1/logs?alloc="
	if _, body := get(t, base+"s1"); body != "hello main in web.web[0]\nbye\n" {
		t.Errorf("service log after stop %q", body)
	}
}

// stopEverything stops and destroys every task the driver knows.
func stopEverything(t *testing.T, d *exec.Driver) {
	ctx := context.Background()
	handles, err := d.Recover(ctx)
	if err != nil {
		t.Log(err)
	}
	for _, h := range handles {
		_ = d.Stop(ctx, h.ID, 0)
		_ = d.Destroy(ctx, h.ID)
	}
	d.Close()
}
