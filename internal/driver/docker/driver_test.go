package docker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
)

func TestFingerprintHealthy(t *testing.T) {
	d := newTestDriver(t, "")
	fp := d.Fingerprint(context.Background())
	if !fp.Healthy || fp.Message != "" {
		t.Fatalf("fingerprint = %+v", fp)
	}
	bad, err := New(Config{StateDir: t.TempDir(), Host: "unix:///nonexistent.sock", PauseBinary: testProgPath})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if fp := bad.Fingerprint(context.Background()); fp.Healthy || !strings.Contains(fp.Message, "unreachable") {
		t.Fatalf("fingerprint of absent daemon = %+v", fp)
	}
}

func TestExitCodeAndLogs(t *testing.T) {
	d := newTestDriver(t, "")
	req := testRequest(t, "echo", "echo", "hello", "world")
	req.Env = map[string]string{"HERD_ALLOC_NAME": "x"}
	start(t, d, req)
	if res := wait(t, d, req.ID); !res.Successful() {
		t.Fatalf("exit = %+v", res)
	}
	if got := readLog(t, req.LogDir, "stdout"); got != "hello world\n" {
		t.Errorf("stdout = %q", got)
	}
	if got := readLog(t, req.LogDir, "stderr"); got != "stderr: hello world\n" {
		t.Errorf("stderr = %q", got)
	}

	req = testRequest(t, "fail", "exit", "7")
	start(t, d, req)
	if res := wait(t, d, req.ID); res.ExitCode != 7 || res.Successful() {
		t.Fatalf("exit = %+v", res)
	}
}

func TestStopSendsTermThenKill(t *testing.T) {
	d := newTestDriver(t, "")
	ctx := context.Background()
	graceful := testRequest(t, "graceful", "sleep")
	stubborn := testRequest(t, "stubborn", "ignore-term")
	start(t, d, graceful)
	start(t, d, stubborn)
	eventually(t, "tasks to run", func() bool {
		return strings.Contains(readLog(t, graceful.LogDir, "stdout"), "sleeping") &&
			strings.Contains(readLog(t, stubborn.LogDir, "stdout"), "ignoring")
	})
	if err := d.Stop(ctx, graceful.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if res := wait(t, d, graceful.ID); res.ExitCode != 3 {
		t.Errorf("SIGTERM handler's exit = %+v, want code 3", res)
	}
	if err := d.Stop(ctx, stubborn.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if res := wait(t, d, stubborn.ID); res.ExitCode != 137 || res.Signal != "SIGKILL" {
		t.Errorf("killed task's exit = %+v, want 137 SIGKILL", res)
	}
}

func TestDynamicPortReachableFromHost(t *testing.T) {
	d := newTestDriver(t, "")
	req := testRequest(t, "web", "serve", "8080")
	req.Task.Config.PortMap = []api.PortMapping{{Name: "http", ContainerPort: 8080}}
	start(t, d, req)
	ports, err := d.Ports(context.Background(), req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ports["http"] == 0 {
		t.Fatalf("ports = %v, want a host port for http", ports)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", ports["http"])
	eventually(t, "the server to answer on "+url, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body) == "hello"
	})
}

func TestTasksOfOneAllocationShareLocalhost(t *testing.T) {
	d := newTestDriver(t, "")
	server := testRequest(t, "server", "serve", "8080")
	client := server
	client.ID.Task, client.LogDir = "client", t.TempDir()
	client.Task.Config.Command, client.Task.Config.Args = "get", []string{"http://127.0.0.1:8080/"}
	start(t, d, server)
	start(t, d, client)
	if res := wait(t, d, client.ID); !res.Successful() {
		t.Fatalf("client exit = %+v; stdout %q", res, readLog(t, client.LogDir, "stdout"))
	}
	if got := readLog(t, client.LogDir, "stdout"); got != "got hello\n" {
		t.Fatalf("client stdout = %q", got)
	}
}

func TestMemoryLimitReportsOOMKill(t *testing.T) {
	d := newTestDriver(t, "")
	req := testRequest(t, "hog", "alloc", "256")
	req.Task.Resources = api.Resources{Memory: 32 << 20, CPU: 500}
	start(t, d, req)
	if res := wait(t, d, req.ID); !res.OOMKilled || res.Successful() {
		t.Fatalf("exit = %+v, want OOM killed", res)
	}
}

func TestNewDriverRecoversRunningContainer(t *testing.T) {
	stateDir := t.TempDir()
	first := newTestDriver(t, stateDir)
	req := testRequest(t, "long", "sleep")
	// Not start(): its cleanup would use the closed driver; TestMain
	// removes what a failing test leaves.
	if _, err := first.Start(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the task to log", func() bool { return readLog(t, req.LogDir, "stdout") == "sleeping\n" })
	first.Close()

	second := newTestDriver(t, stateDir)
	handles, err := second.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range handles {
		found = found || h.ID == req.ID && h.LogDir == req.LogDir
	}
	if !found {
		t.Fatalf("Recover = %v, want %s", handles, req.ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := second.Wait(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Stop(ctx, req.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if res := <-ch; res.ExitCode != 3 {
		t.Fatalf("exit = %+v, want 3", res)
	}
	if got := readLog(t, req.LogDir, "stdout"); got != "sleeping\n" {
		t.Fatalf("stdout after resuming logs = %q, want the line once", got)
	}
	if err := second.Destroy(ctx, req.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := second.client.ContainerInspect(ctx, pauseName(req.ID.AllocUID)); err == nil {
		t.Fatal("pause container left after the allocation's last task was destroyed")
	}
}

func TestMissingImageWithPullPolicyNever(t *testing.T) {
	d := newTestDriver(t, "")
	req := testRequest(t, "ghost")
	req.Task.Config.Image = "herd-test-no-such-image:1"
	_, err := d.Start(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "image herd-test-no-such-image:1 not present and could not be pulled") {
		t.Fatalf("err = %v", err)
	}
}
