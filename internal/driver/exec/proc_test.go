package exec

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestParseProcStat(t *testing.T) {
	tail := " 1 1 0 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 1000 100\n"
	for _, tc := range []struct {
		name    string
		data    string
		want    procInfo
		wantErr bool
	}{
		{"plain", "42 (sleep) S" + tail, procInfo{State: 'S', StartTicks: 123456}, false},
		{"name with spaces and parens", "42 (my (odd) name) Z" + tail, procInfo{State: 'Z', StartTicks: 123456}, false},
		{"truncated", "42 (sleep) S 1 1", procInfo{}, true},
		{"no name", "42 sleep S" + tail, procInfo{}, true},
		{"bad start time", "42 (sleep) S 1 1 0 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 x 1000\n", procInfo{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.data))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("= %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestReadProcOfSelf(t *testing.T) {
	info, err := readProc(os.Getpid())
	if err != nil || info.StartTicks == 0 {
		t.Fatalf("readProc(self) = %+v, %v", info, err)
	}
	if !running(os.Getpid(), info.StartTicks) || running(os.Getpid(), info.StartTicks+1) {
		t.Error("running() does not tell this process by its start time")
	}
}

func TestWaitExitOfNonChild(t *testing.T) {
	// A process that is not our child: sh's child, after sh exited.
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	cmd := []string{"-c", "sleep 0.3 & echo $! > " + pidFile}
	if err := runCommand("sh", cmd...); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := atoi(t, strings.TrimSpace(string(data)))
	info, err := readProc(pid)
	if err != nil {
		t.Skipf("the sleep already ended: %v", err)
	}
	if err := waitExit(testContext(t), pid, info.StartTicks, clockwork.NewRealClock()); err != nil {
		t.Fatal(err)
	}
	if running(pid, info.StartTicks) {
		t.Error("waitExit returned while the process runs")
	}
	// A process that is gone returns at once.
	if err := waitExit(testContext(t), pid, info.StartTicks, clockwork.NewRealClock()); err != nil {
		t.Fatal(err)
	}
}

func TestExitRecordOf(t *testing.T) {
	now := time.Now()
	// WaitStatus encoding: exit code in bits 8-15, signal in bits 0-6.
	if got := exitRecordOf(syscall.WaitStatus(3<<8), now); got.ExitCode != 3 || got.Signal != "" {
		t.Errorf("exit 3 = %+v", got)
	}
	if got := exitRecordOf(syscall.WaitStatus(syscall.SIGKILL), now); got.ExitCode != 137 || got.Signal != "SIGKILL" {
		t.Errorf("SIGKILL = %+v", got)
	}
}

func TestBuildEnv(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hostPath string
		layers   []map[string]string
		want     []string
		wantErr  string
	}{
		{"only PATH from the host", "/bin", nil, []string{"PATH=/bin"}, ""},
		{"later layers win", "/bin", []map[string]string{{"A": "task", "B": "b"}, {"A": "agent"}}, []string{"A=agent", "B=b", "PATH=/bin"}, ""},
		{"task may set PATH", "/bin", []map[string]string{{"PATH": "/opt/bin"}}, []string{"PATH=/opt/bin"}, ""},
		{"no host PATH", "", []map[string]string{{"X": ""}}, []string{"X="}, ""},
		{"empty name", "/bin", []map[string]string{{"": "x"}}, nil, "invalid variable name"},
		{"name with =", "/bin", []map[string]string{{"A=B": "x"}}, nil, "invalid variable name"},
		{"NUL in value", "/bin", []map[string]string{{"A": "x\x00y"}}, nil, "task.config.env[A]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := buildEnv(tc.hostPath, tc.layers...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "data"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "local.sh"), []byte("#!/bin/sh\n"), 0o755)
	for _, tc := range []struct {
		name, command, path string
		want, wantErr       string
	}{
		{"in PATH", "tool", "/nonexistent:" + bin, filepath.Join(bin, "tool"), ""},
		{"relative PATH entry", "tool", "bin", filepath.Join(bin, "tool"), ""},
		{"not executable", "data", bin, "", "command not found: data"},
		{"missing", "nope", bin, "", "command not found: nope"},
		{"relative to working dir", "./local.sh", "", filepath.Join(dir, "local.sh"), ""},
		{"absolute", filepath.Join(bin, "tool"), "", filepath.Join(bin, "tool"), ""},
		{"absolute missing", "/nonexistent/x", "", "", "command not found: /nonexistent/x"},
		{"directory", "./bin", "", "", "is a directory"},
		{"empty", "", bin, "", "command is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookPath(tc.command, tc.path, dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func runCommand(name string, args ...string) error {
	return osexec.Command(name, args...).Run()
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
