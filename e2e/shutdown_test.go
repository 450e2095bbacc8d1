package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestShutdownOnSignal checks that herd store exits 0 soon after SIGTERM or
// SIGINT, even with a watch open, and that its data survives a restart.
func TestShutdownOnSignal(t *testing.T) {
	tests := []struct {
		name string
		sig  os.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"SIGINT", syscall.SIGINT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := t.TempDir()
			p := startHerd(t, dataDir)
			c := p.client()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			const keys = 50
			var lastRev int64
			for i := range keys {
				resp, err := c.Put(ctx, fmt.Sprintf("shutdown/%03d", i), fmt.Sprint(i))
				if err != nil {
					t.Fatalf("put: %v", err)
				}
				lastRev = resp.Header.Revision
			}
			// An open watch stream must not hold up the shutdown.
			watchCtx, watchCancel := context.WithCancel(ctx)
			defer watchCancel()
			wch := c.Watch(watchCtx, "shutdown/", clientv3.WithPrefix(), clientv3.WithRev(1))
			select {
			case wr := <-wch:
				if err := wr.Err(); err != nil {
					t.Fatalf("watch: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("watch: no events")
			}

			start := time.Now()
			p.stop(tt.sig)
			t.Logf("herd store exited %v after %v", time.Since(start).Round(time.Millisecond), tt.sig)
			if log := p.log.String(); !strings.Contains(log, "herd store stopped") {
				t.Errorf("log does not say the store stopped:\n%s", log)
			}

			p = startHerd(t, dataDir)
			resp, err := p.client().Get(ctx, "shutdown/", clientv3.WithPrefix())
			if err != nil {
				t.Fatalf("get after restart: %v", err)
			}
			if len(resp.Kvs) != keys || resp.Header.Revision != lastRev {
				t.Errorf("after restart: %d keys at revision %d, want %d at %d", len(resp.Kvs), resp.Header.Revision, keys, lastRev)
			}
			for i, kv := range resp.Kvs {
				if want := fmt.Sprint(i); string(kv.Value) != want {
					t.Errorf("%s = %q, want %q", kv.Key, kv.Value, want)
				}
			}
			p.stop(syscall.SIGTERM)
		})
	}
}

// TestDataDirInUse checks that a second herd store refuses a data directory
// in use, with exit code 1, and leaves the first one working.
func TestDataDirInUse(t *testing.T) {
	dataDir := t.TempDir()
	p := startHerd(t, dataDir)
	_, stderr, code := runHerd(t, "store", "--data-dir", dataDir, "--listen-client-urls", "http://127.0.0.1:0")
	if code != 1 {
		t.Errorf("second herd store on %s: exit code %d, want 1; stderr:\n%s", dataDir, code, stderr)
	}
	if !strings.Contains(stderr, "Error: ") {
		t.Errorf("second herd store printed no error:\n%s", stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := p.client().Put(ctx, "still", "working"); err != nil {
		t.Errorf("first herd store after the second one gave up: %v", err)
	}
	p.stop(syscall.SIGTERM)
}

// TestCommandLine checks the binary's version stamp and exit codes.
func TestCommandLine(t *testing.T) {
	// A port that is taken makes `herd store` fail at run time.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{[]string{"version"}, 0, "herd version: " + testVersion, ""},
		{[]string{"--help"}, 0, "herd store", ""},
		{[]string{"nope"}, 2, "", `unknown command "nope"`},
		{[]string{"store", "--log-level", "loud"}, 2, "", "--log-level"},
		{[]string{"store", "--max-request-bytes", "0"}, 2, "", "--max-request-bytes"},
		{[]string{"store", "--listen-client-urls", "localhost:2379"}, 2, "", "--listen-client-urls"},
		{[]string{"store", "--data-dir", t.TempDir(), "--listen-client-urls", "http://" + taken.Addr().String()}, 1, "", taken.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := runHerd(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("stdout does not contain %q:\n%s", tt.wantStdout, stdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantStderr, stderr)
			}
		})
	}
}
