package controlplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/agent"
	"github.com/herd-project/herd/internal/benchjobs"
	"github.com/herd-project/herd/internal/driver"
	"github.com/herd-project/herd/internal/driver/exec"
)

func TestMain(m *testing.M) {
	exec.RunShimIfRequested()
	if _, ok := os.LookupEnv("GORACE"); !ok {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(m.Run())
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startCluster runs a control plane on an embedded store and one agent with
// the exec driver, in this process.
func startCluster(t *testing.T) (*ControlPlane, *api.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	cp, err := Start(ctx, Config{DataDir: dir, Listen: "127.0.0.1:0", Logger: quiet, UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	client, err := api.NewClient(cp.URL())
	if err != nil {
		t.Fatal(err)
	}
	drv, err := exec.New(exec.Config{StateDir: filepath.Join(dir, "exec"), CgroupParent: fmt.Sprintf("herd-test-%d", os.Getpid()), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		Client: client, Name: "n1", DataDir: filepath.Join(dir, "agent"),
		Drivers: []driver.Driver{drv}, StopTasksOnShutdown: true, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-agentDone; err != nil {
			t.Errorf("agent: %v", err)
		}
		drv.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := cp.Close(sctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return cp, client
}

// TestTable1TraceStoreRequests runs seed 004's Table 1 trace (create a
// service of 3, scale to 10, scale to 5, delete) in process and checks
// that it stays within the store request budget. Kubernetes needs 2,951
// requests; the target is under 300.
func TestTable1TraceStoreRequests(t *testing.T) {
	cp, client := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitNodeReady(ctx, client, "n1"); err != nil {
		t.Fatal(err)
	}
	before := cp.StoreRequests()
	if _, err := benchjobs.RunTrace(ctx, client, "trace", benchjobs.Table1Trace("trace")); err != nil {
		t.Fatal(err)
	}
	diff := benchjobs.Diff(before, cp.StoreRequests())
	var total int64
	for _, n := range diff {
		total += n
	}
	t.Logf("store requests of the trace: %v (total %d)", diff, total)
	if total >= 300 {
		t.Fatalf("the trace took %d store requests, want < 300: %v", total, diff)
	}
	if diff["Range"] > 0 || diff["WatchCreate"] > 0 {
		t.Errorf("the trace read the store (%v); reads should come from the registry's cache", diff)
	}
}

func waitNodeReady(ctx context.Context, c *api.Client, name string) error {
	for {
		n, err := c.GetNode(ctx, name)
		if err == nil && n.Status.Status == api.NodeReady {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not ready: %v", name, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
