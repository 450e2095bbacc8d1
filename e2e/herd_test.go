package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Deadlines for process life-cycle events. Generous, because CI runs herd
// built with the race detector on two cores.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 20 * time.Second
)

// herdProcess is a running `herd store`.
type herdProcess struct {
	t        *testing.T
	cmd      *exec.Cmd
	endpoint string // host:port it serves clients on
	log      *logWriter
	exited   chan struct{} // closed once the process has exited
	waitErr  error         // valid after exited is closed
}

// startHerd runs `herd store` on dataDir with a free port and waits until it
// logs that it is ready. The process is killed when the test ends.
func startHerd(t *testing.T, dataDir string, args ...string) *herdProcess {
	t.Helper()
	args = append([]string{"store",
		"--data-dir", dataDir,
		"--listen-client-urls", "http://127.0.0.1:0",
		"--log-format", "json",
	}, args...)
	p := &herdProcess{
		t:      t,
		cmd:    exec.Command(herdBin, args...),
		log:    newLogWriter(),
		exited: make(chan struct{}),
	}
	p.cmd.Stderr = p.log
	p.cmd.Stdout = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start herd store: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		// herd built with -race reports races on stderr and goes on.
		if strings.Contains(p.log.String(), "WARNING: DATA RACE") {
			t.Error("herd store reported a data race")
		}
		if t.Failed() {
			t.Logf("log of herd %s:\n%s", strings.Join(args, " "), p.log.String())
		}
	})

	select {
	case urls := <-p.log.ready:
		if len(urls) == 0 {
			t.Fatal("herd store logged no client URLs")
		}
		p.endpoint = strings.TrimPrefix(urls[0], "http://")
	case <-p.exited:
		t.Fatalf("herd store exited before it was ready (%v); its log follows", p.waitErr)
	case <-time.After(startTimeout):
		t.Fatalf("herd store not ready after %v; its log follows", startTimeout)
	}
	return p
}

// kill9 kills the process with SIGKILL and waits until it is gone, so that
// its data directory can be reopened.
func (p *herdProcess) kill9() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatalf("kill -9 herd store: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.t.Fatalf("herd store still running %v after SIGKILL", stopTimeout)
	}
}

// stop sends sig and waits for a clean exit with status 0.
func (p *herdProcess) stop(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal herd store: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.t.Fatalf("herd store did not exit within %v of %v", stopTimeout, sig)
	}
	if p.waitErr != nil {
		p.t.Fatalf("herd store exited with %v after %v, want status 0", p.waitErr, sig)
	}
}

// client returns a Go client connected to the process, closed at test end.
func (p *herdProcess) client() *clientv3.Client {
	p.t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{p.endpoint},
		DialTimeout: 10 * time.Second,
		// The writers of the crash test make the client log every failed
		// call after the kill; the test checks the errors itself.
		Logger: zap.NewNop(),
	})
	if err != nil {
		p.t.Fatalf("connect to herd store at %s: %v", p.endpoint, err)
	}
	p.t.Cleanup(func() { _ = c.Close() })
	return c
}

// logWriter collects a process's output and spots the ready message.
type logWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	ready   chan []string // receives the client URLs once
	sent    bool
}

func newLogWriter() *logWriter {
	return &logWriter{ready: make(chan []string, 1)}
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.scan(w.partial[:i])
		w.partial = w.partial[i+1:]
	}
	return len(b), nil
}

// scan looks for herd's JSON ready line in one line of output.
func (w *logWriter) scan(line []byte) {
	if w.sent {
		return
	}
	var entry struct {
		Msg        string   `json:"msg"`
		ClientURLs []string `json:"client_urls"`
	}
	if json.Unmarshal(line, &entry) != nil || entry.Msg != "herd store ready" {
		return
	}
	w.sent = true
	w.ready <- entry.ClientURLs
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// runHerd runs the herd binary to completion and returns its output and
// exit code.
func runHerd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, herdBin, args...)
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		t.Fatalf("herd %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}
