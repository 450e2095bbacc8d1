package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/benchkv/etcdtest"
)

// Deadlines of orchestration events, generous for CI (herd built with -race
// on two cores).
const (
	converge = 30 * time.Second
)

// serviceJob is a service whose task is a shell loop carrying token in its
// command line.
func serviceJob(name, token string, count int) string {
	return fmt.Sprintf(`metadata:
  name: %s
spec:
  type: service
  groups:
  - name: web
    count: %d
    restartPolicy: {attempts: 3, interval: 10m, delay: 100ms, mode: fail}
    tasks:
    - name: loop
      config:
        command: /bin/sh
        args: ["-c", "echo started $HERD_ALLOC_NAME; while :; do sleep 1; done", "%s"]
      resources: {cpu: 10, memory: 16777216}
      killTimeout: 2s
`, name, count, token)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// cli runs a herd client command against server and fails the test on a
// non-zero exit.
func cli(t *testing.T, server string, args ...string) string {
	t.Helper()
	out, errOut, code := runHerd(t, append(args, "--server", server)...)
	if code != 0 {
		t.Fatalf("herd %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// allocSummary describes allocations for failure messages.
func allocSummary(allocs []api.Allocation) string {
	var parts []string
	for _, a := range allocs {
		parts = append(parts, fmt.Sprintf("%s:%s/%s@%s", a.Name, a.Spec.DesiredStatus, a.Status.ClientStatus, a.Spec.Node))
	}
	return strings.Join(parts, " ")
}

// waitRunning waits until exactly n allocations of job run (optionally all
// on nodes accepted by onNode) and no other allocation of it is unfinished.
func waitRunning(t *testing.T, c *api.Client, job string, n int, onNode func(string) bool) []api.Allocation {
	t.Helper()
	var allocs []api.Allocation
	waitFor(t, converge, fmt.Sprintf("%d running allocations of %s", n, job), func() (bool, string) {
		list, err := c.ListAllocs(context.Background(), api.AllocFilter{Namespace: "default", Job: job})
		if err != nil {
			return false, err.Error()
		}
		allocs = list.Items
		running, live := 0, 0
		for _, a := range allocs {
			if a.Spec.DesiredStatus == api.DesiredRun && a.Status.ClientStatus == api.ClientRunning && (onNode == nil || onNode(a.Spec.Node)) {
				running++
			}
			if !a.Status.ClientStatus.Terminal() {
				live++
			}
		}
		// Scaled-down allocations stay listed, stopped, for a while.
		return running == n && live == n, allocSummary(allocs)
	})
	return allocs
}

func waitProcesses(t *testing.T, token string, n int) {
	t.Helper()
	waitFor(t, converge, fmt.Sprintf("%d task processes", n), func() (bool, string) {
		pids := tokenProcesses(token)
		return len(pids) == n, fmt.Sprintf("%d processes: %v", len(pids), pids)
	})
}

// startUp runs `herd up` with extra args and returns its API address.
func startUp(t *testing.T, extra ...string) (*proc, string) {
	addr := freeAddr(t)
	args := append([]string{"up", "--data-dir", t.TempDir(), "--listen", addr,
		"--store-listen", "http://127.0.0.1:0", "--name", "n1", "--unsafe-no-fsync"}, extra...)
	p := startProc(t, "herd up", args...)
	return p, "http://" + addr
}

// TestUpServiceLifecycle: herd up, apply a 3-replica service → 3 processes;
// kill one → restarted; scale to 5 → 5; logs; delete → every process gone.
func TestUpServiceLifecycle(t *testing.T) {
	p, server := startUp(t)
	serviceLifecycle(t, p, server)
}

// TestUpServiceLifecycleOnEtcd runs the same scenario with a real etcd as
// the store.
func TestUpServiceLifecycleOnEtcd(t *testing.T) {
	endpoint := etcdtest.Start(t)
	p, server := startUp(t, "--store-endpoints", endpoint)
	serviceLifecycle(t, p, server)
}

func serviceLifecycle(t *testing.T, up *proc, server string) {
	token := fmt.Sprintf("herd-e2e-%d", time.Now().UnixNano())
	killTokenProcesses(t, token)
	c := apiClient(t, server)
	waitFor(t, converge, "node n1 ready", func() (bool, string) {
		n, err := c.GetNode(context.Background(), "n1")
		return err == nil && n.Status.Status == api.NodeReady, errString(err)
	})
	if out := up.log.String(); !strings.Contains(out, "herd is up") || !strings.Contains(out, server) {
		t.Fatalf("herd up did not print its address:\n%s", out)
	}

	out := cli(t, server, "apply", "-f", writeFile(t, "web.yaml", serviceJob("web", token, 3)))
	if !strings.Contains(out, "job/web created") {
		t.Fatalf("apply printed %q", out)
	}
	allocs := waitRunning(t, c, "web", 3, nil)
	waitProcesses(t, token, 3)

	// Kill one task: the agent restarts it in place.
	victim := allocs[0]
	pid := victim.Status.Tasks["loop"].PID
	if pid == 0 {
		t.Fatalf("allocation %s reports no pid", victim.Name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill task %d: %v", pid, err)
	}
	waitFor(t, converge, victim.Name+" restarted", func() (bool, string) {
		a, err := c.GetAlloc(context.Background(), "default", victim.Name)
		if err != nil {
			return false, err.Error()
		}
		ts := a.Status.Tasks["loop"]
		return ts.Restarts >= 1 && ts.State == api.TaskRunning && ts.PID != pid, fmt.Sprintf("%+v", ts)
	})
	waitProcesses(t, token, 3)

	out = cli(t, server, "scale", "web", "5")
	if !strings.Contains(out, "scaled") {
		t.Fatalf("scale printed %q", out)
	}
	waitRunning(t, c, "web", 5, nil)
	waitProcesses(t, token, 5)

	waitFor(t, converge, "the task's output in herd logs", func() (bool, string) {
		logs := cli(t, server, "logs", "web.web[4]")
		return strings.Contains(logs, "started web.web[4]"), logs
	})
	var list api.List[api.Allocation]
	if err := json.Unmarshal([]byte(cli(t, server, "get", "allocs", "-o", "json")), &list); err != nil || len(list.Items) != 5 {
		t.Fatalf("get allocs -o json: %d items, %v", len(list.Items), err)
	}

	cli(t, server, "scale", "web", "2")
	waitRunning(t, c, "web", 2, nil)
	waitProcesses(t, token, 2)

	cli(t, server, "delete", "job", "web")
	waitProcesses(t, token, 0)
	waitFor(t, converge, "allocations collected", func() (bool, string) {
		list, err := c.ListAllocs(context.Background(), api.AllocFilter{Namespace: "default"})
		return err == nil && len(list.Items) == 0, allocSummary(list.Items)
	})
	up.stop()
}

// TestAgentLoss: a server with two agents; kill -9 one agent → its
// allocations run on the other within the grace period; the agent comes
// back → the tasks it left behind are stopped.
func TestAgentLoss(t *testing.T) {
	token := fmt.Sprintf("herd-e2e-%d", time.Now().UnixNano())
	killTokenProcesses(t, token)
	addr := freeAddr(t)
	server := "http://" + addr
	startProc(t, "herd server", "server", "--data-dir", t.TempDir(), "--listen", addr,
		"--store-listen", "http://127.0.0.1:0", "--node-grace-period", "3s", "--unsafe-no-fsync")
	c := apiClient(t, server)
	agentDir := t.TempDir()
	startAgent := func(name string) *proc {
		return startProc(t, "agent "+name, "agent", "--server", server, "--name", name,
			"--data-dir", filepath.Join(agentDir, name), "--listen", "127.0.0.1:0")
	}
	a1 := startAgent("a1")
	startAgent("a2")
	waitFor(t, converge, "two ready nodes", func() (bool, string) {
		list, err := c.ListNodes(context.Background())
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, n := range list.Items {
			if n.Status.Status == api.NodeReady {
				ready++
			}
		}
		return ready == 2, fmt.Sprintf("%d ready", ready)
	})

	cli(t, server, "apply", "-f", writeFile(t, "web.yaml", serviceJob("web", token, 4)))
	allocs := waitRunning(t, c, "web", 4, nil)
	onA1 := 0
	for _, a := range allocs {
		if a.Spec.Node == "a1" {
			onA1++
		}
	}
	if onA1 != 2 {
		t.Fatalf("spread placed %d of 4 allocations on a1, want 2: %s", onA1, allocSummary(allocs))
	}

	killed := time.Now()
	a1.kill9()
	waitRunning(t, c, "web", 4, func(node string) bool { return node == "a2" })
	t.Logf("allocations of the killed agent ran on a2 %v after the kill", time.Since(killed).Round(time.Millisecond))
	n, err := c.GetNode(context.Background(), "a1")
	if err != nil || n.Status.Status != api.NodeDown {
		t.Fatalf("node a1 after the kill: %+v, %v", n.Status, err)
	}
	// The killed agent's tasks still run (its node is merely cut off)...
	waitProcesses(t, token, 6)
	// ...until it comes back and stops the incarnations that were replaced.
	startAgent("a1")
	waitProcesses(t, token, 4)
	waitFor(t, converge, "node a1 ready again", func() (bool, string) {
		n, err := c.GetNode(context.Background(), "a1")
		return err == nil && n.Status.Status == api.NodeReady, errString(err)
	})

	cli(t, server, "delete", "job", "web")
	waitProcesses(t, token, 0)
}

// TestBatchJobs: a batch job that succeeds completes; one whose task fails
// is retried per its restart policy and then fails.
func TestBatchJobs(t *testing.T) {
	token := fmt.Sprintf("herd-e2e-%d", time.Now().UnixNano())
	killTokenProcesses(t, token)
	_, server := startUp(t)
	c := apiClient(t, server)
	job := func(name, script string) string {
		return fmt.Sprintf(`metadata: {name: %s}
spec:
  type: batch
  groups:
  - name: work
    count: 2
    restartPolicy: {attempts: 2, interval: 10m, delay: 100ms, mode: fail}
    tasks:
    - name: main
      config: {command: /bin/sh, args: ["-c", %q, "%s"]}
`, name, script, token)
	}
	cli(t, server, "apply", "-f", writeFile(t, "ok.yaml", job("ok", "echo done")))
	cli(t, server, "apply", "-f", writeFile(t, "bad.yaml", job("bad", "echo failing; exit 3")))

	jobPhase := func(name string, want api.JobPhase) {
		waitFor(t, converge, "job "+name+" "+string(want), func() (bool, string) {
			j, err := c.GetJob(context.Background(), "default", name)
			if err != nil {
				return false, err.Error()
			}
			return j.Status.Phase == want, fmt.Sprintf("%+v", j.Status)
		})
	}
	jobPhase("ok", api.JobComplete)
	jobPhase("bad", api.JobFailed)
	list, err := c.ListAllocs(context.Background(), api.AllocFilter{Namespace: "default", Job: "bad"})
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, a := range list.Items {
		ts := a.Status.Tasks["main"]
		if a.Status.ClientStatus == api.ClientFailed {
			failed++
			if ts.Restarts != 2 || ts.ExitCode == nil || *ts.ExitCode != 3 {
				t.Errorf("%s: restarts %d, exit code %v; want 2 restarts and exit code 3", a.Name, ts.Restarts, ts.ExitCode)
			}
		}
	}
	if failed == 0 {
		t.Fatalf("no failed allocation of job bad: %s", allocSummary(list.Items))
	}
	describe := cli(t, server, "describe", "job", "bad")
	if !strings.Contains(describe, "failed") {
		t.Errorf("describe job bad does not say failed:\n%s", describe)
	}
}
