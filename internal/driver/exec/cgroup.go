package exec

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
	"github.com/jonboulle/clockwork"
)

const (
	// cpuPeriodMicros is the CFS period; a task gets CPU millicores * 100µs
	// of it.
	cpuPeriodMicros = 100000
	// minCPUQuotaMicros is the smallest quota the kernel accepts.
	minCPUQuotaMicros = 1000
)

// cgroupHost is what New found out about the host's cgroups.
type cgroupHost struct {
	// version is 1 or 2, or 0 when tasks cannot be limited; reason says why.
	version int
	reason  string
	root    string // where the hierarchies are mounted, /sys/fs/cgroup
	parent  string // the directory task cgroups go in, relative to a hierarchy
}

// taskCgroup is one task's cgroup, recorded in input.json so that the shim
// and later driver instances find it.
type taskCgroup struct {
	Version int `json:"version"`
	// Dirs are the task's cgroup directories: the unified one on v2; the
	// memory one and then the cpu one on v1.
	Dirs []string `json:"dirs"`
}

// detectCgroups looks for cgroup v2 at root, then for v1 memory and cpu
// hierarchies below it, and creates the parent directory for task cgroups
// (which also proves that they are writable).
func detectCgroups(root, parent string) cgroupHost {
	h := cgroupHost{root: root, parent: parent}
	var err error
	if controllers, rerr := os.ReadFile(filepath.Join(root, "cgroup.controllers")); rerr == nil {
		h.version = 2
		err = h.setupV2(string(controllers))
	} else if exists(filepath.Join(root, "memory", "cgroup.procs")) && exists(filepath.Join(root, "cpu", "cgroup.procs")) {
		h.version = 1
		err = h.setupV1()
	} else {
		err = fmt.Errorf("no cgroup v2 hierarchy (%s) and no v1 memory and cpu hierarchies under %s",
			filepath.Join(root, "cgroup.controllers"), root)
	}
	if err != nil {
		h.version, h.reason = 0, err.Error()
	}
	return h
}

func (h *cgroupHost) setupV1() error {
	for _, controller := range []string{"memory", "cpu"} {
		if err := os.MkdirAll(filepath.Join(h.root, controller, h.parent), 0o755); err != nil {
			return fmt.Errorf("cgroup v1: %w", err)
		}
	}
	return nil
}

func (h *cgroupHost) setupV2(controllers string) error {
	for _, c := range []string{"memory", "cpu"} {
		if !hasWord(controllers, c) {
			return fmt.Errorf("cgroup v2: controller %q is not available (cgroup.controllers: %q)", c, strings.TrimSpace(controllers))
		}
	}
	// Each level from the root down to the parent must hand the
	// controllers to its children.
	dir := h.root
	levels := append([]string{""}, strings.Split(filepath.Clean(h.parent), string(filepath.Separator))...)
	for i, elem := range levels {
		dir = filepath.Join(dir, elem)
		if i > 0 {
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("cgroup v2: %w", err)
			}
		}
		if err := enableControllers(dir); err != nil {
			return err
		}
	}
	return nil
}

func enableControllers(dir string) error {
	path := filepath.Join(dir, "cgroup.subtree_control")
	if cur, err := os.ReadFile(path); err == nil && hasWord(string(cur), "memory") && hasWord(string(cur), "cpu") {
		return nil
	}
	if err := writeFile(path, "+memory +cpu"); err != nil {
		return fmt.Errorf("cgroup v2: enable memory and cpu controllers: %w", err)
	}
	return nil
}

func hasWord(s, word string) bool {
	for _, w := range strings.Fields(s) {
		if w == word {
			return true
		}
	}
	return false
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// cgroupName is the directory name of a task's cgroup.
func cgroupName(id driver.TaskID) string { return id.AllocUID + "-" + id.Task }

// create makes the task's cgroup (reusing one left by an earlier run of the
// same task) and sets its limits; zero requests lift the limits.
func (h *cgroupHost) create(id driver.TaskID, res api.Resources) (*taskCgroup, error) {
	if h.version == 0 {
		return nil, nil
	}
	if res.Memory < 0 {
		return nil, fmt.Errorf("resources.memory must not be negative, got %d", res.Memory)
	}
	if res.CPU < 0 {
		return nil, fmt.Errorf("resources.cpu must not be negative, got %d", res.CPU)
	}
	tc := &taskCgroup{Version: h.version}
	if h.version == 2 {
		tc.Dirs = []string{filepath.Join(h.root, h.parent, cgroupName(id))}
	} else {
		tc.Dirs = []string{
			filepath.Join(h.root, "memory", h.parent, cgroupName(id)),
			filepath.Join(h.root, "cpu", h.parent, cgroupName(id)),
		}
	}
	for _, dir := range tc.Dirs {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
	}
	if err := tc.setLimits(res); err != nil {
		tc.removeDirs()
		return nil, err
	}
	return tc, nil
}

func (tc *taskCgroup) setLimits(res api.Resources) error {
	quota := "-1"
	if res.CPU > 0 {
		quota = strconv.FormatInt(max(res.CPU*cpuPeriodMicros/1000, minCPUQuotaMicros), 10)
	}
	if tc.Version == 2 {
		memory, swap := "max", "max"
		if res.Memory > 0 {
			memory, swap = strconv.FormatInt(res.Memory, 10), "0"
		}
		if quota == "-1" {
			quota = "max"
		}
		dir := tc.Dirs[0]
		if err := writeFile(filepath.Join(dir, "memory.max"), memory); err != nil {
			return fmt.Errorf("set memory limit: %w", err)
		}
		// Without swap the memory limit is the task's whole budget.
		if exists(filepath.Join(dir, "memory.swap.max")) {
			if err := writeFile(filepath.Join(dir, "memory.swap.max"), swap); err != nil {
				return fmt.Errorf("set swap limit: %w", err)
			}
		}
		if err := writeFile(filepath.Join(dir, "cpu.max"), quota+" "+strconv.Itoa(cpuPeriodMicros)); err != nil {
			return fmt.Errorf("set cpu quota: %w", err)
		}
		return nil
	}
	if err := setV1Memory(tc.Dirs[0], res.Memory); err != nil {
		return err
	}
	cpuDir := tc.Dirs[1]
	if err := writeFile(filepath.Join(cpuDir, "cpu.cfs_period_us"), strconv.Itoa(cpuPeriodMicros)); err != nil {
		return fmt.Errorf("set cpu period: %w", err)
	}
	if err := writeFile(filepath.Join(cpuDir, "cpu.cfs_quota_us"), quota); err != nil {
		return fmt.Errorf("set cpu quota: %w", err)
	}
	return nil
}

// setV1Memory sets the memory limit and, where swap is accounted, the same
// memory+swap limit so that the task cannot swap around its limit. The
// kernel wants memory <= memory+swap at every step, so memsw is raised
// first (which fails harmlessly when it would drop below the old memory
// limit) and set again afterwards.
func setV1Memory(dir string, limit int64) error {
	v := "-1"
	if limit > 0 {
		v = strconv.FormatInt(limit, 10)
	}
	memsw := filepath.Join(dir, "memory.memsw.limit_in_bytes")
	hasSwap := exists(memsw)
	if hasSwap {
		_ = writeFile(memsw, v)
	}
	if err := writeFile(filepath.Join(dir, "memory.limit_in_bytes"), v); err != nil {
		return fmt.Errorf("set memory limit: %w", err)
	}
	if hasSwap {
		if err := writeFile(memsw, v); err != nil {
			return fmt.Errorf("set memory+swap limit: %w", err)
		}
	}
	return nil
}

// join moves a process into the task's cgroups (v1; on v2 the task starts
// inside its cgroup).
func (tc *taskCgroup) join(pid int) error {
	for _, dir := range tc.Dirs {
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("move task into cgroup %s: %w", dir, err)
		}
	}
	return nil
}

// oomKills counts the OOM kills in the task's cgroup so far: memory.events
// on v2, memory.oom_control on v1, or memory.failcnt on v1 kernels before
// 4.13, which do not count OOM kills.
func (tc *taskCgroup) oomKills() (uint64, error) {
	dir := tc.Dirs[0]
	if tc.Version == 2 {
		return readKeyedCounter(filepath.Join(dir, "memory.events"), "oom_kill")
	}
	n, err := readKeyedCounter(filepath.Join(dir, "memory.oom_control"), "oom_kill")
	if err == nil {
		return n, nil
	}
	data, ferr := os.ReadFile(filepath.Join(dir, "memory.failcnt"))
	if ferr != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}

func readKeyedCounter(path, key string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseKeyedCounter(data, key)
}

// parseKeyedCounter finds "key value" in a flat-keyed cgroup file.
func parseKeyedCounter(data []byte, key string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %q counter", key)
}

// remove kills whatever still runs in the task's cgroup and removes it,
// retrying while the kernel drains it. A cgroup that is gone is fine.
func (tc *taskCgroup) remove(ctx context.Context, clock clockwork.Clock) error {
	const drainTimeout = 2 * time.Second
	deadline := clock.Now().Add(drainTimeout)
	for _, dir := range tc.Dirs {
		for {
			killCgroup(dir)
			err := syscall.Rmdir(dir)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || clock.Now().After(deadline) {
				return fmt.Errorf("remove cgroup %s: %w", dir, err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("remove cgroup %s: %w", dir, ctx.Err())
			case <-clock.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// removeDirs removes the directories of a cgroup nothing was started in.
func (tc *taskCgroup) removeDirs() {
	for _, dir := range tc.Dirs {
		syscall.Rmdir(dir)
	}
}

// killCgroup SIGKILLs every process in a cgroup: processes that left the
// task's process group (setsid) are still in its cgroup.
func killCgroup(dir string) {
	if err := writeFile(filepath.Join(dir, "cgroup.kill"), "1"); err == nil {
		return
	}
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, field := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(field); err == nil && pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// writeFile writes a cgroup control file, which must exist.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
