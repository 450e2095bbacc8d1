package exec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
	"github.com/herd-project/herd/internal/logstore"
)

// testCgroupParent keeps this test run's cgroups apart from a real agent's
// and from other runs.
var testCgroupParent = "herd-test-" + strconv.Itoa(os.Getpid())

func TestMain(m *testing.M) {
	RunShimIfRequested()
	// Shims are this test binary; under the race detector each would
	// otherwise linger a second at exit before its exit is noticed.
	if _, ok := os.LookupEnv("GORACE"); !ok {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	code := m.Run()
	for _, dir := range []string{
		filepath.Join("/sys/fs/cgroup", testCgroupParent),
		filepath.Join("/sys/fs/cgroup/memory", testCgroupParent),
		filepath.Join("/sys/fs/cgroup/cpu", testCgroupParent),
	} {
		syscall.Rmdir(dir)
	}
	os.Exit(code)
}

// newTestDriver starts a driver on a fresh (or the given) state directory.
// At the end of the test every task left in that directory is killed and
// destroyed by another driver instance, as a restarted agent would.
func newTestDriver(t *testing.T, cfg Config) *Driver {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = testCgroupParent
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Close()
		cleanupTasks(t, Config{StateDir: cfg.StateDir, CgroupRoot: cfg.CgroupRoot, CgroupParent: cfg.CgroupParent})
	})
	return d
}

func cleanupTasks(t *testing.T, cfg Config) {
	d, err := New(cfg)
	if err != nil {
		t.Error(err)
		return
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	handles, err := d.Recover(ctx)
	if err != nil {
		t.Error(err)
	}
	for _, h := range handles {
		if err := d.Stop(ctx, h.ID, 0); err != nil {
			t.Errorf("cleanup: stop %s: %v", h.ID, err)
		}
		if err := d.Destroy(ctx, h.ID); err != nil {
			t.Errorf("cleanup: destroy %s: %v", h.ID, err)
		}
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// request builds a start request for a task named name running command.
func request(t *testing.T, name, command string, args ...string) driver.StartRequest {
	base := t.TempDir()
	return driver.StartRequest{
		ID:        driver.TaskID{AllocUID: "uid-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-"), Task: name},
		Namespace: "default",
		AllocName: "job.group[0]",
		Task: api.Task{
			Name:   name,
			Driver: Name,
			Config: api.TaskConfig{Command: command, Args: args},
		},
		Dir:    filepath.Join(base, "task"),
		LogDir: filepath.Join(base, "logs"),
	}
}

func start(t *testing.T, d *Driver, req driver.StartRequest) *driver.Handle {
	t.Helper()
	h, err := d.Start(testContext(t), req)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return h
}

func wait(t *testing.T, d *Driver, id driver.TaskID) driver.ExitResult {
	t.Helper()
	ch, err := d.Wait(testContext(t), id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	select {
	case res, ok := <-ch:
		if !ok {
			t.Fatal("Wait channel closed without an exit")
		}
		return res
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for the task to exit")
	}
	return driver.ExitResult{}
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readLog reads a whole stream of a task's log.
func readLog(t *testing.T, logDir, stream string) string {
	t.Helper()
	var sb strings.Builder
	err := logstore.Copy(context.Background(), &sb, logDir, stream, logstore.ReadOptions{})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return sb.String()
}

// waitForLog waits until a task's stdout contains s.
func waitForLog(t *testing.T, logDir, s string) string {
	t.Helper()
	var out string
	eventually(t, "stdout contains "+strconv.Quote(s), func() bool {
		out = readLog(t, logDir, "stdout")
		return strings.Contains(out, s)
	})
	return out
}

func cgroupsAvailable(t *testing.T, d *Driver) {
	t.Helper()
	if d.cgroups.version == 0 {
		t.Skipf("cgroups are not available on this host (run as root with cgroup v1 or v2): %s", d.cgroups.reason)
	}
}
