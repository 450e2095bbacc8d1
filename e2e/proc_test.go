package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
)

// proc is a running herd process of any subcommand.
type proc struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	log     *logWriter
	exited  chan struct{}
	waitErr error
}

// startProc runs herd with args; the process is killed when the test ends.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, cmd: exec.Command(herdBin, args...), log: newLogWriter(), exited: make(chan struct{})}
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	// A race-enabled binary otherwise waits a second at every exit, and
	// every task's shim is this binary.
	p.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill9()
		if strings.Contains(p.log.String(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race", name)
		}
		if t.Failed() {
			t.Logf("log of %s (herd %s):\n%s", name, strings.Join(args, " "), p.log.String())
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// kill9 kills the process and waits until it is gone.
func (p *proc) kill9() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.t.Fatalf("%s still running %v after SIGKILL", p.name, stopTimeout)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.t.Fatalf("%s did not exit within %v of SIGTERM", p.name, stopTimeout)
	}
	if p.waitErr != nil {
		p.t.Fatalf("%s exited with %v after SIGTERM, want status 0", p.name, p.waitErr)
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiClient returns a client of the API server at addr once it answers.
func apiClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	c, err := api.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, startTimeout, "the API server at "+addr, func() (bool, string) {
		_, err := c.ListNodes(context.Background())
		return err == nil, errString(err)
	})
	return c
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// tokenProcesses returns the pids of processes whose command line contains
// token: the e2e jobs put a unique token into their tasks' arguments, so the
// test counts real processes, not what herd reports.
func tokenProcesses(token string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(b), token) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killTokenProcesses is the safety net that leaves no task behind a test.
func killTokenProcesses(t *testing.T, token string) {
	t.Cleanup(func() {
		for _, pid := range tokenProcesses(token) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}
