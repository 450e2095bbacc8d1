package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/herd-project/herd/internal/logstore"
	"golang.org/x/sys/unix"
)

// Environment of the shim process.
const (
	shimEnv    = "HERD_EXEC_SHIM"
	shimDirEnv = "HERD_EXEC_SHIM_DIR"
	// readyFD is the shim's end of the readiness pipe (ExtraFiles[0]).
	readyFD = 3
)

// logDrainTimeout bounds how long the shim keeps copying output after the
// task exited: a process that left the task's process group may hold the
// pipes open forever.
const logDrainTimeout = 2 * time.Second

// RunShimIfRequested turns this process into a task shim and exits when it
// was started as one (HERD_EXEC_SHIM=1); otherwise it returns at once. The
// herd binary's main, and TestMain of every package whose tests start exec
// tasks, call it before anything else.
func RunShimIfRequested() {
	if os.Getenv(shimEnv) != "1" {
		return
	}
	// The readiness pipe arrives without close-on-exec; the task must not
	// inherit it, or the driver would wait for the task's exit to see EOF.
	syscall.CloseOnExec(readyFD)
	ready := os.NewFile(readyFD, "ready")
	code := runShim(os.Getenv(shimDirEnv), ready)
	os.Exit(code)
}

// runShim supervises one task; see the package documentation. It reports
// start failures over ready and returns the shim's exit code.
func runShim(stateDir string, ready *os.File) int {
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s herd exec shim: %s\n", time.Now().UTC().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
	}
	fail := func(err error) int {
		logf("%v", err)
		sendReady(ready, readyMessage{Error: err.Error()})
		return 1
	}
	if stateDir == "" {
		return fail(errors.New(shimDirEnv + " is not set"))
	}
	var in shimInput
	if err := readJSON(filepath.Join(stateDir, inputFile), &in); err != nil {
		return fail(fmt.Errorf("read task input: %w", err))
	}
	if in.Path == "" || len(in.Args) == 0 || in.LogDir == "" || in.Dir == "" {
		return fail(errors.New("task input lacks path, args, dir or logDir"))
	}
	if cg := in.Cgroup; cg != nil && (cg.Version == 2 && len(cg.Dirs) != 1 || cg.Version == 1 && len(cg.Dirs) != 2 || cg.Version != 1 && cg.Version != 2) {
		return fail(fmt.Errorf("task input has a malformed cgroup: %+v", *cg))
	}
	run, err := startTask(stateDir, &in)
	if err != nil {
		return fail(err)
	}
	// Best effort: a driver that went away during Start has nobody to tell,
	// and the task is recorded in state.json for the next one.
	sendReady(ready, readyMessage{TaskPID: run.cmd.Process.Pid})

	rec := run.wait()
	if err := writeJSONAtomic(filepath.Join(stateDir, exitFile), rec); err != nil {
		logf("record exit: %v", err)
		return 1
	}
	return 0
}

func sendReady(ready *os.File, msg readyMessage) {
	if ready == nil {
		return
	}
	json.NewEncoder(ready).Encode(msg)
	ready.Close()
}

// taskRun is a started task and what the shim does with its output.
type taskRun struct {
	in          *shimInput
	cmd         *osexec.Cmd
	ticks       uint64
	oomBaseline uint64
	signals     chan os.Signal
	copies      sync.WaitGroup
	pipes       []*os.File // read ends
	logs        []*logstore.Writer
}

// startTask starts the task with its output going to log writers, puts it
// into its cgroup and records state.json. On error nothing is left running.
func startTask(stateDir string, in *shimInput) (*taskRun, error) {
	run := &taskRun{in: in}
	var childEnds []*os.File
	started := false
	defer func() {
		// The task has its own copies of the write ends; the shim must not
		// keep them, or the pipes never reach EOF.
		for _, f := range childEnds {
			f.Close()
		}
		if !started {
			run.closeLogs()
		}
	}()
	streams := make([]*os.File, 2)
	for i, stream := range []string{"stdout", "stderr"} {
		w, err := logstore.NewWriter(in.LogDir, stream, in.Log)
		if err != nil {
			return nil, err
		}
		run.logs = append(run.logs, w)
		r, childEnd, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("create %s pipe: %w", stream, err)
		}
		run.pipes = append(run.pipes, r)
		childEnds = append(childEnds, childEnd)
		streams[i] = childEnd
	}
	if err := os.MkdirAll(in.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create working directory: %w", err)
	}

	run.cmd = &osexec.Cmd{
		Path:        in.Path,
		Args:        in.Args,
		Env:         in.Env,
		Dir:         in.Dir,
		Stdout:      streams[0],
		Stderr:      streams[1],
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if cg := in.Cgroup; cg != nil {
		var err error
		if run.oomBaseline, err = cg.oomKills(); err != nil {
			return nil, fmt.Errorf("read OOM counter: %w", err)
		}
		if cg.Version == 2 {
			dir, err := os.Open(cg.Dirs[0])
			if err != nil {
				return nil, fmt.Errorf("open cgroup: %w", err)
			}
			defer dir.Close()
			run.cmd.SysProcAttr.UseCgroupFD = true
			run.cmd.SysProcAttr.CgroupFD = int(dir.Fd())
		}
	}
	// Signals meant for the shim (an init system stopping everything) are
	// passed on to the task, and the shim stays to record its exit.
	run.signals = make(chan os.Signal, 4)
	signal.Notify(run.signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)

	if err := run.cmd.Start(); err != nil {
		signal.Stop(run.signals)
		return nil, fmt.Errorf("start %s: %w", in.Args[0], err)
	}
	pid := run.cmd.Process.Pid
	killTask := func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		run.cmd.Wait()
		signal.Stop(run.signals)
	}
	if cg := in.Cgroup; cg != nil && cg.Version == 1 {
		if err := cg.join(pid); err != nil {
			killTask()
			return nil, err
		}
	}
	info, err := readProc(pid)
	if err == nil {
		var self procInfo
		self, err = readProc(os.Getpid())
		if err == nil {
			run.ticks = info.StartTicks
			err = writeJSONAtomic(filepath.Join(stateDir, stateFile), shimState{
				ShimPID:        os.Getpid(),
				ShimStartTicks: self.StartTicks,
				TaskPID:        pid,
				TaskStartTicks: info.StartTicks,
				StartedAt:      time.Now().UTC(),
			})
		}
	}
	if err != nil {
		killTask()
		return nil, fmt.Errorf("record task state: %w", err)
	}

	for i := range run.pipes {
		run.copies.Add(1)
		go func() {
			defer run.copies.Done()
			drain(run.logs[i], run.pipes[i])
		}()
	}
	go func() {
		for sig := range run.signals {
			syscall.Kill(-pid, sig.(syscall.Signal))
		}
	}()
	started = true
	return run, nil
}

// wait waits for the task, kills the rest of its process group, finishes
// copying its output and says how it ended.
func (run *taskRun) wait() exitRecord {
	pid := run.cmd.Process.Pid
	// Wait for the exit without reaping: while the task is an unreaped
	// zombie its pid cannot be reused, so signalling its group is safe.
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	signal.Stop(run.signals)
	// The task's process group goes with the task, as a container's
	// processes go with its init.
	syscall.Kill(-pid, syscall.SIGKILL)
	err := run.cmd.Wait()
	finished := time.Now().UTC()

	var rec exitRecord
	if ws, ok := processStatus(run.cmd.ProcessState); ok {
		rec = exitRecordOf(ws, finished)
	} else {
		rec = exitRecord{ExitCode: -1, FinishedAt: finished, Error: fmt.Sprintf("wait for task: %v", err)}
	}
	if cg := run.in.Cgroup; cg != nil {
		if n, err := cg.oomKills(); err == nil && n > run.oomBaseline {
			rec.OOMKilled = true
		}
	}

	drained := make(chan struct{})
	go func() {
		run.copies.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(logDrainTimeout):
		for _, p := range run.pipes {
			p.Close() // ends the copies
		}
		<-drained
	}
	run.closeLogs()
	return rec
}

// drain copies the task's output into its log until the pipe closes. When
// the log cannot be written (disk full), output is dropped rather than left
// in the pipe: a full pipe would block the task.
func drain(log io.Writer, pipe io.Reader) {
	buf := make([]byte, 32<<10)
	logging := true
	for {
		n, err := pipe.Read(buf)
		if n > 0 && logging {
			if _, werr := log.Write(buf[:n]); werr != nil {
				fmt.Fprintf(os.Stderr, "%s herd exec shim: dropping task output: %v\n", time.Now().UTC().Format(time.RFC3339Nano), werr)
				logging = false
			}
		}
		if err != nil {
			return
		}
	}
}

func processStatus(ps *os.ProcessState) (syscall.WaitStatus, bool) {
	if ps == nil {
		return 0, false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ws, ok
}

func (run *taskRun) closeLogs() {
	for _, p := range run.pipes {
		p.Close()
	}
	for _, w := range run.logs {
		w.Close()
	}
}
