package exec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herd-project/herd/internal/driver"
	"github.com/herd-project/herd/internal/logstore"
	"github.com/jonboulle/clockwork"
)

// Name is the driver's name in task specs.
const Name = "exec"

// Config configures the exec driver.
type Config struct {
	// StateDir holds one directory per task (required).
	StateDir string
	// ShimPath is the binary started as the shim, with HERD_EXEC_SHIM=1;
	// it must call RunShimIfRequested first thing. Default os.Executable().
	ShimPath string
	// CgroupRoot is where the cgroup hierarchies are mounted. Default
	// /sys/fs/cgroup.
	CgroupRoot string
	// CgroupParent is the cgroup, relative to each hierarchy's root, that
	// holds the task cgroups. Default "herd".
	CgroupParent string
	// Log sets the rotation of task output. Zero values take logstore's
	// defaults (10 MiB per file, 3 old files).
	Log logstore.WriterOptions
	// Clock times kill timeouts and polling. Default the real clock.
	Clock clockwork.Clock
	// Logger reports what the driver cleans up on its own. Default
	// slog.Default().
	Logger *slog.Logger
}

// Driver is the exec task driver. It is safe for concurrent use.
type Driver struct {
	cfg     Config
	cgroups cgroupHost
	// ctx ends the background watchers when the driver is closed.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	tasks    map[driver.TaskID]*task
	starting map[driver.TaskID]bool

	// dirMu orders creating a task's directory against removing its
	// allocation's directory when that looks empty.
	dirMu sync.Mutex
}

var _ driver.Driver = (*Driver)(nil)

// task is what the driver knows of one task.
type task struct {
	id    driver.TaskID
	dir   string
	input shimInput
	state shimState

	exit *driver.Exit
}

func (t *task) handle() *driver.Handle {
	return &driver.Handle{ID: t.id, Driver: Name, PID: t.state.TaskPID, StartedAt: t.state.StartedAt, LogDir: t.input.LogDir}
}

// New checks cfg, creates the state directory and detects cgroups.
func New(cfg Config) (*Driver, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("exec: StateDir is required")
	}
	stateDir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("exec: StateDir: %w", err)
	}
	cfg.StateDir = stateDir
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("exec: create StateDir: %w", err)
	}
	if cfg.ShimPath == "" {
		if cfg.ShimPath, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("exec: find own executable for ShimPath: %w", err)
		}
	}
	if err := checkExecutable(cfg.ShimPath); err != nil {
		return nil, fmt.Errorf("exec: ShimPath %s: %w", cfg.ShimPath, err)
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/sys/fs/cgroup"
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "herd"
	}
	if p := filepath.Clean(cfg.CgroupParent); filepath.IsAbs(p) || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return nil, fmt.Errorf("exec: CgroupParent %q must be a relative path inside the hierarchy", cfg.CgroupParent)
	}
	if cfg.Log.MaxBytes < 0 || cfg.Log.MaxFiles < 0 {
		return nil, fmt.Errorf("exec: Log.MaxBytes and Log.MaxFiles must not be negative")
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Driver{
		cfg:      cfg,
		cgroups:  detectCgroups(cfg.CgroupRoot, cfg.CgroupParent),
		ctx:      ctx,
		cancel:   cancel,
		tasks:    map[driver.TaskID]*task{},
		starting: map[driver.TaskID]bool{},
	}, nil
}

// Close stops the driver's background watchers. Tasks keep running under
// their shims; a new driver finds them with Recover.
func (d *Driver) Close() error {
	d.cancel()
	return nil
}

// Name returns "exec".
func (d *Driver) Name() string { return Name }

// Fingerprint reports the driver healthy when it can start shims, and says
// whether cgroups limit the tasks.
func (d *Driver) Fingerprint(ctx context.Context) driver.Fingerprint {
	fp := driver.Fingerprint{Healthy: true, Attributes: map[string]string{"driver.exec.cgroups": "none"}}
	if d.cgroups.version > 0 {
		fp.Attributes["driver.exec.cgroups"] = fmt.Sprintf("v%d", d.cgroups.version)
	} else {
		fp.Message = "cgroups unavailable: memory and cpu limits not enforced (" + d.cgroups.reason + ")"
	}
	if err := checkExecutable(d.cfg.ShimPath); err != nil {
		fp.Healthy = false
		fp.Message = fmt.Sprintf("shim binary %s: %v", d.cfg.ShimPath, err)
	}
	return fp
}

func (d *Driver) taskDir(id driver.TaskID) string {
	return filepath.Join(d.cfg.StateDir, id.AllocUID, id.Task)
}

// Start starts the task under a new shim and returns once the task runs.
// An earlier, exited run of the same task is destroyed first.
func (d *Driver) Start(ctx context.Context, req driver.StartRequest) (*driver.Handle, error) {
	id := req.ID
	if err := checkTaskID(id); err != nil {
		return nil, err
	}
	if err := checkStartRequest(req); err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.starting[id] {
		d.mu.Unlock()
		return nil, fmt.Errorf("exec: task %s is already being started", id)
	}
	d.starting[id] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.starting, id)
		d.mu.Unlock()
	}()

	if old, err := d.find(id, true); err == nil {
		if !old.exit.Exited() {
			return nil, fmt.Errorf("exec: task %s is already running (pid %d)", id, old.state.TaskPID)
		}
		if err := d.destroy(ctx, old); err != nil {
			return nil, fmt.Errorf("exec: remove earlier run of task %s: %w", id, err)
		}
	} else if !errors.Is(err, driver.ErrNotFound) {
		return nil, err
	}

	in, err := d.prepare(req)
	if err != nil {
		return nil, fmt.Errorf("exec: start task %s: %w", id, err)
	}
	dir := d.taskDir(id)
	d.dirMu.Lock()
	err = os.MkdirAll(dir, 0o700)
	d.dirMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("exec: start task %s: create state dir: %w", id, err)
	}
	removeAll := func() {
		if in.Cgroup != nil {
			in.Cgroup.remove(context.WithoutCancel(ctx), d.cfg.Clock)
		}
		d.removeTaskDir(id)
	}
	if in.Cgroup, err = d.cgroups.create(id, req.Task.Resources); err != nil {
		removeAll()
		return nil, fmt.Errorf("exec: start task %s: %w", id, err)
	}
	if err := writeJSONAtomic(filepath.Join(dir, inputFile), in); err != nil {
		removeAll()
		return nil, fmt.Errorf("exec: start task %s: %w", id, err)
	}
	t, err := d.spawn(ctx, dir, in)
	if err != nil {
		removeAll()
		return nil, fmt.Errorf("exec: start task %s: %w", id, err)
	}
	return t.handle(), nil
}

func checkStartRequest(req driver.StartRequest) error {
	switch {
	case req.Task.Config.Command == "":
		return errors.New("exec: task.config.command is required")
	case req.Dir == "":
		return errors.New("exec: the task directory (Dir) is required")
	case req.LogDir == "":
		return errors.New("exec: the log directory (LogDir) is required")
	}
	return nil
}

// prepare resolves what the shim is to run: working directory (created),
// environment and executable.
func (d *Driver) prepare(req driver.StartRequest) (*shimInput, error) {
	taskDir, err := filepath.Abs(req.Dir)
	if err != nil {
		return nil, fmt.Errorf("task directory: %w", err)
	}
	logDir, err := filepath.Abs(req.LogDir)
	if err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}
	workDir := req.Task.Config.WorkingDir
	if !filepath.IsAbs(workDir) {
		workDir = filepath.Join(taskDir, workDir)
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, fmt.Errorf("task.config.workingDir: %w", err)
	}
	env, err := buildEnv(os.Getenv("PATH"), req.Task.Config.Env, req.Env)
	if err != nil {
		return nil, err
	}
	path, err := lookPath(req.Task.Config.Command, envValue(env, "PATH"), workDir)
	if err != nil {
		return nil, err
	}
	return &shimInput{
		ID:        req.ID,
		Namespace: req.Namespace,
		AllocName: req.AllocName,
		Path:      path,
		Args:      append([]string{req.Task.Config.Command}, req.Task.Config.Args...),
		Env:       env,
		Dir:       workDir,
		LogDir:    logDir,
		Log:       d.cfg.Log,
	}, nil
}

// removeTaskDir removes a task's state directory and its allocation's
// directory once that is empty.
func (d *Driver) removeTaskDir(id driver.TaskID) error {
	if err := os.RemoveAll(d.taskDir(id)); err != nil {
		return err
	}
	d.dirMu.Lock()
	os.Remove(filepath.Join(d.cfg.StateDir, id.AllocUID)) // fails while other tasks are there
	d.dirMu.Unlock()
	return nil
}

// find returns the task from memory or, for tasks an earlier driver
// started, from disk. Tasks in the middle of Start are not found except by
// Start itself.
func (d *Driver) find(id driver.TaskID, fromStart bool) (*task, error) {
	if err := checkTaskID(id); err != nil {
		return nil, err
	}
	d.mu.Lock()
	t, starting := d.tasks[id], d.starting[id]
	d.mu.Unlock()
	if t != nil {
		return t, nil
	}
	if starting && !fromStart {
		return nil, fmt.Errorf("exec: task %s is being started: %w", id, driver.ErrNotFound)
	}
	t, err := d.load(id)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if existing := d.tasks[id]; existing != nil {
		d.mu.Unlock()
		return existing, nil
	}
	d.tasks[id] = t
	d.mu.Unlock()
	d.watch(t)
	return t, nil
}

// load reads a task's state directory. A directory without state.json is
// a start that never completed (a driver died during Start): it is cleaned
// up and reported as not found.
func (d *Driver) load(id driver.TaskID) (*task, error) {
	dir := d.taskDir(id)
	t := &task{id: id, dir: dir, exit: driver.NewExit()}
	err := readJSON(filepath.Join(dir, inputFile), &t.input)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr == nil {
			d.cleanupIncomplete(id, nil)
		}
		return nil, fmt.Errorf("exec: task %s: %w", id, driver.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("exec: task %s: %w", id, err)
	}
	err = readJSON(filepath.Join(dir, stateFile), &t.state)
	if errors.Is(err, fs.ErrNotExist) {
		d.cleanupIncomplete(id, t.input.Cgroup)
		return nil, fmt.Errorf("exec: task %s: %w", id, driver.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("exec: task %s: %w", id, err)
	}
	return t, nil
}

// cleanupIncomplete removes the directory and cgroup of a start that never
// completed, unless a Start of this driver is creating them right now.
// Whatever such a start got running is killed with the cgroup, and a shim
// still starting fails to write its state without the directory.
func (d *Driver) cleanupIncomplete(id driver.TaskID, cg *taskCgroup) {
	d.dirMu.Lock()
	defer d.dirMu.Unlock()
	d.mu.Lock()
	starting := d.starting[id]
	d.mu.Unlock()
	if starting {
		return
	}
	d.cfg.Logger.Warn("exec: removing the state of a task whose start never completed", "task", id.String())
	if cg != nil {
		if err := cg.remove(d.ctx, d.cfg.Clock); err != nil {
			d.cfg.Logger.Warn("exec: cannot remove cgroup", "task", id.String(), "err", err)
		}
	}
	os.RemoveAll(d.taskDir(id))
	os.Remove(filepath.Join(d.cfg.StateDir, id.AllocUID)) // fails while other tasks are there
}

// watch arranges for finish to run once the shim of a loaded task exits.
func (d *Driver) watch(t *task) {
	if exists(filepath.Join(t.dir, exitFile)) {
		d.finish(t)
		return
	}
	go func() {
		if err := waitExit(d.ctx, t.state.ShimPID, t.state.ShimStartTicks, d.cfg.Clock); err != nil {
			return // the driver was closed
		}
		d.finish(t)
	}()
}

// finish records how the task ended, once its shim has exited.
func (d *Driver) finish(t *task) {
	t.exit.Record(func() driver.ExitResult {
		var rec exitRecord
		err := readJSON(filepath.Join(t.dir, exitFile), &rec)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			rec = d.lost(t)
		case err != nil:
			rec = exitRecord{ExitCode: -1, FinishedAt: d.cfg.Clock.Now(), Error: "task lost: " + err.Error()}
		}
		return rec.result()
	})
}

// lost handles a shim that exited without recording the task's exit: the
// task, if it still runs, is killed (nobody would collect its exit). Nothing
// is written: a later driver instance finds the shim gone and no exit.json
// just the same, and a write could race with a Destroy.
func (d *Driver) lost(t *task) exitRecord {
	msg := fmt.Sprintf("task lost: its shim (pid %d) exited without recording the task's exit", t.state.ShimPID)
	if last := lastLine(filepath.Join(t.dir, shimLogFile)); last != "" {
		msg += "; shim log: " + last
	}
	signalGroup(t.state.TaskPID, t.state.TaskStartTicks, syscall.SIGKILL)
	if t.input.Cgroup != nil {
		for _, dir := range t.input.Cgroup.Dirs {
			killCgroup(dir)
		}
	}
	d.cfg.Logger.Warn("exec: "+msg, "task", t.id.String())
	return exitRecord{ExitCode: -1, FinishedAt: d.cfg.Clock.Now().UTC(), Error: msg}
}

// lastLine returns the last non-empty line of a small file.
func lastLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Wait returns a channel that receives the task's exit once and is then
// closed. If ctx ends (or the driver is closed) first, the channel is
// closed without a value.
func (d *Driver) Wait(ctx context.Context, id driver.TaskID) (<-chan driver.ExitResult, error) {
	t, err := d.find(id, false)
	if err != nil {
		return nil, err
	}
	return t.exit.Deliver(ctx, d.ctx.Done()), nil
}

// Stop sends SIGTERM to the task's process group, SIGKILL after timeout
// (at once for a timeout <= 0), and returns once the task has exited and
// its exit is recorded. Stopping an exited task does nothing.
func (d *Driver) Stop(ctx context.Context, id driver.TaskID, timeout time.Duration) error {
	t, err := d.find(id, false)
	if err != nil {
		return err
	}
	if t.exit.Exited() {
		return nil
	}
	if err := signalGroup(t.state.TaskPID, t.state.TaskStartTicks, syscall.SIGTERM); err != nil {
		return fmt.Errorf("exec: stop task %s: %w", id, err)
	}
	if timeout > 0 {
		select {
		case <-t.exit.Done():
			return nil
		case <-d.cfg.Clock.After(timeout):
		case <-ctx.Done():
			return fmt.Errorf("exec: stop task %s: %w", id, ctx.Err())
		case <-d.ctx.Done():
			return fmt.Errorf("exec: stop task %s: driver closed", id)
		}
	}
	if err := signalGroup(t.state.TaskPID, t.state.TaskStartTicks, syscall.SIGKILL); err != nil {
		return fmt.Errorf("exec: kill task %s: %w", id, err)
	}
	select {
	case <-t.exit.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("exec: kill task %s: %w", id, ctx.Err())
	case <-d.ctx.Done():
		return fmt.Errorf("exec: kill task %s: driver closed", id)
	}
}

// Destroy removes the cgroup and state directory of an exited task. The
// task's logs stay.
func (d *Driver) Destroy(ctx context.Context, id driver.TaskID) error {
	t, err := d.find(id, false)
	if err != nil {
		return err
	}
	if !t.exit.Exited() {
		return fmt.Errorf("exec: destroy task %s: it is still running; stop it first", id)
	}
	return d.destroy(ctx, t)
}

func (d *Driver) destroy(ctx context.Context, t *task) error {
	if t.input.Cgroup != nil {
		if err := t.input.Cgroup.remove(ctx, d.cfg.Clock); err != nil {
			return fmt.Errorf("exec: destroy task %s: %w", t.id, err)
		}
	}
	if err := d.removeTaskDir(t.id); err != nil {
		return fmt.Errorf("exec: destroy task %s: %w", t.id, err)
	}
	d.mu.Lock()
	if d.tasks[t.id] == t {
		delete(d.tasks, t.id)
	}
	d.mu.Unlock()
	return nil
}

// Recover returns every task in the state directory, running or exited,
// ordered by ID. Their exits can be waited for as for tasks this driver
// started. Directories that do not hold a task are reported in the log and
// skipped.
func (d *Driver) Recover(ctx context.Context) ([]*driver.Handle, error) {
	allocs, err := os.ReadDir(d.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("exec: recover: %w", err)
	}
	var handles []*driver.Handle
	for _, alloc := range allocs {
		if !alloc.IsDir() {
			continue
		}
		tasks, err := os.ReadDir(filepath.Join(d.cfg.StateDir, alloc.Name()))
		if err != nil {
			return nil, fmt.Errorf("exec: recover: %w", err)
		}
		for _, entry := range tasks {
			id := driver.TaskID{AllocUID: alloc.Name(), Task: entry.Name()}
			if !entry.IsDir() || checkTaskID(id) != nil {
				continue
			}
			t, err := d.find(id, false)
			if errors.Is(err, driver.ErrNotFound) {
				continue
			}
			if err != nil {
				d.cfg.Logger.Warn("exec: recover: skipping unreadable task state", "task", id.String(), "err", err)
				continue
			}
			handles = append(handles, t.handle())
		}
	}
	slices.SortFunc(handles, func(a, b *driver.Handle) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	return handles, nil
}
