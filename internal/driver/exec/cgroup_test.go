package exec

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestFingerprintReportsCgroups(t *testing.T) {
	d := newTestDriver(t, Config{})
	fp := d.Fingerprint(testContext(t))
	if !fp.Healthy {
		t.Fatalf("fingerprint = %+v", fp)
	}
	want := "none"
	if d.cgroups.version > 0 {
		want = "v" + strconv.Itoa(d.cgroups.version)
	}
	if got := fp.Attributes["driver.exec.cgroups"]; got != want {
		t.Errorf("cgroups attribute = %q, want %q", got, want)
	}
}

func TestWithoutCgroupsTasksStillRun(t *testing.T) {
	d := newTestDriver(t, Config{CgroupRoot: t.TempDir()})
	fp := d.Fingerprint(testContext(t))
	if !fp.Healthy || !strings.HasPrefix(fp.Message, "cgroups unavailable: memory and cpu limits not enforced (") {
		t.Errorf("fingerprint = %+v", fp)
	}
	req := request(t, "free", "sh", "-c", "exit 0")
	req.Task.Resources.Memory = 64 << 20
	req.Task.Resources.CPU = 500
	start(t, d, req)
	if res := wait(t, d, req.ID); !res.Successful() {
		t.Errorf("exit = %+v", res)
	}
}

func TestCgroupLimitsAreWritten(t *testing.T) {
	d := newTestDriver(t, Config{})
	cgroupsAvailable(t, d)
	req := request(t, "limited", "sleep", "100")
	req.Task.Resources.Memory = 64 << 20
	req.Task.Resources.CPU = 250
	h := start(t, d, req)
	tk, err := d.find(req.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	tc := tk.input.Cgroup
	if tc == nil {
		t.Fatal("task has no cgroup")
	}
	pid := strconv.Itoa(h.PID)
	if tc.Version == 2 {
		dir := tc.Dirs[0]
		if got := readTrimmed(t, filepath.Join(dir, "cpu.max")); got != "25000 100000" {
			t.Errorf("cpu.max = %q", got)
		}
		if got := readTrimmed(t, filepath.Join(dir, "memory.max")); got != strconv.Itoa(64<<20) {
			t.Errorf("memory.max = %q", got)
		}
	} else {
		memDir, cpuDir := tc.Dirs[0], tc.Dirs[1]
		if got := readTrimmed(t, filepath.Join(cpuDir, "cpu.cfs_quota_us")); got != "25000" {
			t.Errorf("cpu.cfs_quota_us = %q", got)
		}
		if got := readTrimmed(t, filepath.Join(cpuDir, "cpu.cfs_period_us")); got != "100000" {
			t.Errorf("cpu.cfs_period_us = %q", got)
		}
		if got := readTrimmed(t, filepath.Join(memDir, "memory.limit_in_bytes")); got != strconv.Itoa(64<<20) {
			t.Errorf("memory.limit_in_bytes = %q", got)
		}
	}
	for _, dir := range tc.Dirs {
		if procs := strings.Fields(readTrimmed(t, filepath.Join(dir, "cgroup.procs"))); len(procs) != 1 || procs[0] != pid {
			t.Errorf("%s/cgroup.procs = %v, want the task %s", dir, procs, pid)
		}
	}
	if err := d.Stop(testContext(t), req.ID, 0); err != nil {
		t.Fatal(err)
	}
	wait(t, d, req.ID)
	if err := d.Destroy(testContext(t), req.ID); err != nil {
		t.Fatal(err)
	}
	for _, dir := range tc.Dirs {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left after Destroy: %v", dir, err)
		}
	}
}

func TestMemoryLimitOOMKills(t *testing.T) {
	d := newTestDriver(t, Config{})
	cgroupsAvailable(t, d)
	// tail keeps the current line in memory, and /dev/zero has no newline.
	req := request(t, "hog", "tail", "/dev/zero")
	req.Task.Resources.Memory = 16 << 20
	start(t, d, req)
	res := wait(t, d, req.ID)
	if !res.OOMKilled || res.Signal != "SIGKILL" || res.Successful() {
		t.Errorf("exit = %+v, want OOM killed", res)
	}
}

func TestParseKeyedCounter(t *testing.T) {
	for _, tc := range []struct {
		name, data, key string
		want            uint64
		wantErr         bool
	}{
		{"v1 oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill", 2, false},
		{"v2 events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n", "oom_kill", 1, false},
		{"prefix is not a match", "oom_kill_disable 0\n", "oom_kill", 0, true},
		{"garbage value", "oom_kill x\n", "oom_kill", 0, true},
		{"empty", "", "oom_kill", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseKeyedCounter([]byte(tc.data), tc.key)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("= %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestDetectCgroupsWithoutHierarchies(t *testing.T) {
	root := t.TempDir()
	h := detectCgroups(root, "herd")
	if h.version != 0 || !strings.Contains(h.reason, "no cgroup v2 hierarchy") {
		t.Errorf("detect on an empty dir = %+v", h)
	}
	// A v2 hierarchy without the cpu controller cannot limit tasks.
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("memory io pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h = detectCgroups(root, "herd")
	if h.version != 0 || !strings.Contains(h.reason, `controller "cpu" is not available`) {
		t.Errorf("detect without cpu = %+v", h)
	}
}
