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

	"github.com/herd-project/herd/internal/driver"
	"github.com/herd-project/herd/internal/logstore"
	"github.com/jonboulle/clockwork"
)

func TestStartReportsExitCodeAndLogs(t *testing.T) {
	d := newTestDriver(t, Config{})
	req := request(t, "main", "sh", "-c", "echo hello; echo oops >&2; exit 3")
	h := start(t, d, req)
	if h.Driver != Name || h.PID <= 0 || h.ID != req.ID || h.StartedAt.IsZero() || h.LogDir != req.LogDir {
		t.Errorf("handle = %+v", h)
	}
	res := wait(t, d, req.ID)
	if res.ExitCode != 3 || res.Signal != "" || res.OOMKilled || res.Err != nil || res.FinishedAt.IsZero() {
		t.Errorf("exit = %+v, want code 3", res)
	}
	if got := readLog(t, req.LogDir, "stdout"); got != "hello\n" {
		t.Errorf("stdout = %q", got)
	}
	if got := readLog(t, req.LogDir, "stderr"); got != "oops\n" {
		t.Errorf("stderr = %q", got)
	}
	// A second Wait gets the same exit.
	if again := wait(t, d, req.ID); again.ExitCode != 3 {
		t.Errorf("second Wait = %+v", again)
	}
}

func TestEnvironmentAndWorkingDir(t *testing.T) {
	t.Setenv("HERD_TEST_HOST_ONLY", "must not leak")
	d := newTestDriver(t, Config{})
	req := request(t, "env", "sh", "-c", "env; echo cwd=$(pwd)")
	req.Task.Config.Env = map[string]string{"FOO": "from-task", "SHARED": "task"}
	req.Env = map[string]string{"HERD_ALLOC_NAME": "job.group[0]", "SHARED": "agent"}
	req.Task.Config.WorkingDir = "work/sub"
	start(t, d, req)
	if res := wait(t, d, req.ID); !res.Successful() {
		t.Fatalf("exit = %+v; stderr %q", res, readLog(t, req.LogDir, "stderr"))
	}
	out := readLog(t, req.LogDir, "stdout")
	for _, want := range []string{
		"FOO=from-task\n", "SHARED=agent\n", "HERD_ALLOC_NAME=job.group[0]\n",
		"PATH=" + os.Getenv("PATH") + "\n",
		"cwd=" + filepath.Join(req.Dir, "work/sub") + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "HERD_TEST_HOST_ONLY") || strings.Contains(out, shimEnv) {
		t.Errorf("host environment leaked into the task:\n%s", out)
	}
}

func TestCommandNotFound(t *testing.T) {
	d := newTestDriver(t, Config{})
	for _, command := range []string{"herd-no-such-command", "./missing.sh"} {
		req := request(t, "missing", command)
		_, err := d.Start(testContext(t), req)
		if err == nil || !strings.Contains(err.Error(), "command not found: "+command) {
			t.Errorf("Start(%q) error = %v, want command not found", command, err)
		}
	}
	entries, _ := os.ReadDir(d.cfg.StateDir)
	if len(entries) != 0 {
		t.Errorf("state dir keeps %d entries after failed starts", len(entries))
	}
}

func TestStartFailureInShimLeavesNothing(t *testing.T) {
	d := newTestDriver(t, Config{})
	// Found and executable, but not a valid program: exec fails in the shim.
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte{0x7f, 'E', 'L', 'F', 0, 0}, 0o755); err != nil {
		t.Fatal(err)
	}
	req := request(t, "bad", bad)
	_, err := d.Start(testContext(t), req)
	if err == nil || !strings.Contains(err.Error(), "exec format error") {
		t.Fatalf("Start error = %v, want exec format error", err)
	}
	entries, _ := os.ReadDir(d.cfg.StateDir)
	if len(entries) != 0 {
		t.Errorf("state dir keeps %d entries after a failed start", len(entries))
	}
	if _, err := d.Wait(testContext(t), req.ID); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Wait after failed start: %v, want ErrNotFound", err)
	}
}

func TestBadRequests(t *testing.T) {
	d := newTestDriver(t, Config{})
	for _, tc := range []struct {
		name   string
		mutate func(*driver.StartRequest)
		want   string
	}{
		{"no command", func(r *driver.StartRequest) { r.Task.Config.Command = "" }, "task.config.command is required"},
		{"no alloc uid", func(r *driver.StartRequest) { r.ID.AllocUID = "" }, "allocUID is required"},
		{"task escapes", func(r *driver.StartRequest) { r.ID.Task = ".." }, "task \"..\""},
		{"alloc with slash", func(r *driver.StartRequest) { r.ID.AllocUID = "a/b" }, "path separators"},
		{"bad env name", func(r *driver.StartRequest) { r.Task.Config.Env = map[string]string{"A=B": "x"} }, "task.config.env"},
		{"no log dir", func(r *driver.StartRequest) { r.LogDir = "" }, "LogDir"},
		{"negative memory", func(r *driver.StartRequest) { r.Task.Resources.Memory = -1 }, "resources.memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request(t, "bad", "true")
			tc.mutate(&req)
			_, err := d.Start(testContext(t), req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := d.Wait(testContext(t), driver.TaskID{AllocUID: "nope", Task: "x"}); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Wait(unknown) = %v, want ErrNotFound", err)
	}
	if err := d.Stop(testContext(t), driver.TaskID{AllocUID: "nope", Task: "x"}, time.Second); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Stop(unknown) = %v, want ErrNotFound", err)
	}
}

func TestStopHonoursSIGTERM(t *testing.T) {
	d := newTestDriver(t, Config{})
	req := request(t, "term", "sh", "-c", `trap "echo bye; exit 7" TERM; echo ready; sleep 100 & wait`)
	start(t, d, req)
	waitForLog(t, req.LogDir, "ready")
	if err := d.Stop(testContext(t), req.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	res := wait(t, d, req.ID)
	if res.ExitCode != 7 || res.Signal != "" {
		t.Errorf("exit = %+v, want code 7 from the TERM trap", res)
	}
	if out := readLog(t, req.LogDir, "stdout"); out != "ready\nbye\n" {
		t.Errorf("stdout = %q", out)
	}
	// Stopping an exited task does nothing.
	if err := d.Stop(testContext(t), req.ID, time.Minute); err != nil {
		t.Errorf("second Stop = %v", err)
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	clock := clockwork.NewFakeClock()
	d := newTestDriver(t, Config{Clock: clock})
	req := request(t, "stubborn", "sh", "-c", `trap "" TERM; echo ready; sleep 100`)
	start(t, d, req)
	waitForLog(t, req.LogDir, "ready")
	stopped := make(chan error, 1)
	go func() { stopped <- d.Stop(testContext(t), req.ID, 30*time.Second) }()
	// Stop has sent SIGTERM and waits for the kill timeout.
	if err := clock.BlockUntilContext(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned before the kill timeout: %v", err)
	default:
	}
	clock.Advance(30 * time.Second)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if res := wait(t, d, req.ID); res.Signal != "SIGKILL" || res.ExitCode != 137 {
		t.Errorf("exit = %+v, want SIGKILL", res)
	}
}

func TestStopKillsTheWholeProcessGroup(t *testing.T) {
	d := newTestDriver(t, Config{})
	req := request(t, "group", "sh", "-c", `sleep 100 & echo child=$!; wait`)
	h := start(t, d, req)
	out := waitForLog(t, req.LogDir, "\n")
	childPID, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(out, "child=")))
	if err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	child, err := readProc(childPID)
	if err != nil {
		t.Fatal(err)
	}
	leader, err := readProc(h.PID)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(testContext(t), req.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if res := wait(t, d, req.ID); res.Signal != "SIGTERM" {
		t.Errorf("exit = %+v, want SIGTERM", res)
	}
	eventually(t, "the task and its child are gone", func() bool {
		return !running(childPID, child.StartTicks) && !running(h.PID, leader.StartTicks)
	})
}

func TestLogsAreRotated(t *testing.T) {
	d := newTestDriver(t, Config{Log: logstore.WriterOptions{MaxBytes: 1000, MaxFiles: 2}})
	req := request(t, "chatty", "sh", "-c", `i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done`)
	start(t, d, req)
	if res := wait(t, d, req.ID); !res.Successful() {
		t.Fatalf("exit = %+v", res)
	}
	for _, name := range []string{"stdout.log", "stdout.log.1", "stdout.log.2"} {
		info, err := os.Stat(filepath.Join(req.LogDir, name))
		if err != nil || info.Size() > 1000 {
			t.Errorf("%s: %v, size %v", name, err, info)
		}
	}
	if _, err := os.Stat(filepath.Join(req.LogDir, "stdout.log.3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stdout.log.3 exists beyond MaxFiles=2")
	}
	var sb strings.Builder
	if err := logstore.Copy(testContext(t), &sb, req.LogDir, "stdout", logstore.ReadOptions{Tail: 2}); err != nil {
		t.Fatal(err)
	}
	if sb.String() != "line 498\nline 499\n" {
		t.Errorf("tail = %q", sb.String())
	}
}

func TestRestartAfterExitAppendsLogs(t *testing.T) {
	d := newTestDriver(t, Config{})
	req := request(t, "again", "sh", "-c", `echo run`)
	start(t, d, req)
	wait(t, d, req.ID)
	// A running task cannot be started twice; an exited one is replaced.
	req2 := req
	req2.Task.Config.Args = []string{"-c", "echo run; sleep 100"}
	h := start(t, d, req2)
	if _, err := d.Start(testContext(t), req2); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Start of a running task: %v", err)
	}
	waitForLog(t, req.LogDir, "run\nrun\n")
	if err := d.Destroy(testContext(t), req.ID); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Errorf("Destroy of a running task: %v", err)
	}
	if err := d.Stop(testContext(t), req.ID, 0); err != nil {
		t.Fatal(err)
	}
	// With no timeout SIGKILL follows SIGTERM at once; either may end it.
	if res := wait(t, d, h.ID); res.Signal != "SIGTERM" && res.Signal != "SIGKILL" {
		t.Errorf("exit = %+v, want a signal", res)
	}
	if err := d.Destroy(testContext(t), req.ID); err != nil {
		t.Fatal(err)
	}
	if err := d.Destroy(testContext(t), req.ID); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("second Destroy = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(d.cfg.StateDir, req.ID.AllocUID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("allocation state dir left after Destroy: %v", err)
	}
	if got := readLog(t, req.LogDir, "stdout"); got != "run\nrun\n" {
		t.Errorf("logs after Destroy = %q", got)
	}
}

func TestNewDriverRecoversRunningTask(t *testing.T) {
	stateDir := t.TempDir()
	first := newTestDriver(t, Config{StateDir: stateDir})
	req := request(t, "survivor", "sh", "-c", `trap "exit 42" TERM; echo ready; sleep 100 & wait`)
	h := start(t, first, req)
	waitForLog(t, req.LogDir, "ready")
	first.Close() // the agent goes away

	second := newTestDriver(t, Config{StateDir: stateDir})
	handles, err := second.Recover(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(handles) != 1 || handles[0].ID != req.ID || handles[0].PID != h.PID || !handles[0].StartedAt.Equal(h.StartedAt) {
		t.Fatalf("recovered %+v, want %+v", handles, h)
	}
	ch, err := second.Wait(testContext(t), req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Stop(testContext(t), req.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-ch:
		if res.ExitCode != 42 || res.Err != nil {
			t.Errorf("exit = %+v, want 42", res)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after Stop")
	}
}

func TestRecoverTaskThatExitedWithoutDriver(t *testing.T) {
	stateDir := t.TempDir()
	first := newTestDriver(t, Config{StateDir: stateDir})
	req := request(t, "batch", "sh", "-c", `while [ ! -e go ]; do sleep 0.01; done; exit 5`)
	start(t, first, req)
	first.Close()

	if err := os.WriteFile(filepath.Join(req.Dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	exitPath := filepath.Join(stateDir, req.ID.AllocUID, req.ID.Task, exitFile)
	eventually(t, "the shim records the exit", func() bool { return exists(exitPath) })

	second := newTestDriver(t, Config{StateDir: stateDir})
	handles, err := second.Recover(testContext(t))
	if err != nil || len(handles) != 1 {
		t.Fatalf("Recover = %v, %v", handles, err)
	}
	if res := wait(t, second, req.ID); res.ExitCode != 5 || res.Err != nil {
		t.Errorf("exit = %+v, want 5", res)
	}
}

func TestShimLossIsReportedAndTaskKilled(t *testing.T) {
	d := newTestDriver(t, Config{})
	req := request(t, "orphan", "sleep", "100")
	h := start(t, d, req)
	var st shimState
	if err := readJSON(filepath.Join(d.taskDir(req.ID), stateFile), &st); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.ShimPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	res := wait(t, d, req.ID)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "task lost") {
		t.Fatalf("exit = %+v, want task lost", res)
	}
	eventually(t, "the task is killed", func() bool { return !running(h.PID, st.TaskStartTicks) })

	// A later driver reports the same.
	other := newTestDriver(t, Config{StateDir: d.cfg.StateDir})
	if res := wait(t, other, req.ID); res.Err == nil || !strings.Contains(res.Err.Error(), "task lost") {
		t.Errorf("recovered exit = %+v, want task lost", res)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	d := newTestDriver(t, Config{})
	req := request(t, "long", "sleep", "100")
	start(t, d, req)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := d.Wait(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Error("Wait delivered an exit for a running task")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait channel not closed after its context ended")
	}
}

func TestRecoverRemovesIncompleteStarts(t *testing.T) {
	d := newTestDriver(t, Config{})
	// A driver that died during Start leaves input.json without state.json.
	id := driver.TaskID{AllocUID: "half", Task: "started"}
	if err := os.MkdirAll(d.taskDir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeJSONAtomic(filepath.Join(d.taskDir(id), inputFile), shimInput{ID: id}); err != nil {
		t.Fatal(err)
	}
	handles, err := d.Recover(testContext(t))
	if err != nil || len(handles) != 0 {
		t.Fatalf("Recover = %v, %v; want nothing", handles, err)
	}
	if _, err := os.Stat(filepath.Join(d.cfg.StateDir, id.AllocUID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("incomplete start left behind: %v", err)
	}
}
