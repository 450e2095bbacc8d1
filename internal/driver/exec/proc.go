package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"
)

// procInfo is what /proc/<pid>/stat tells about a process.
type procInfo struct {
	State      byte   // 'R', 'S', 'Z' (zombie), ...
	StartTicks uint64 // start time in clock ticks after boot
}

// parseProcStat reads the state and start time out of /proc/<pid>/stat.
// The command name (field 2) may contain spaces and parentheses, so fields
// are counted after its closing parenthesis.
func parseProcStat(data []byte) (procInfo, error) {
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return procInfo{}, errors.New("malformed stat: no command name")
	}
	fields := strings.Fields(string(data[end+1:]))
	// fields[0] is field 3 (state); field 22 (starttime) is fields[19].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return procInfo{}, fmt.Errorf("malformed stat: %d fields after the command name", len(fields))
	}
	ticks, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return procInfo{}, fmt.Errorf("malformed stat start time: %w", err)
	}
	return procInfo{State: fields[0][0], StartTicks: ticks}, nil
}

// readProc reads /proc/<pid>/stat. A process that does not exist is an
// error wrapping fs.ErrNotExist.
func readProc(pid int) (procInfo, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, err
	}
	return parseProcStat(data)
}

// sameProcess reports whether pid still names the process that had start
// time ticks (running or a zombie not yet reaped), so its pid is not
// recycled.
func sameProcess(pid int, ticks uint64) bool {
	if pid <= 0 {
		return false
	}
	info, err := readProc(pid)
	return err == nil && info.StartTicks == ticks
}

// running reports whether the process is still running: not gone, not
// recycled and not a zombie.
func running(pid int, ticks uint64) bool {
	if pid <= 0 {
		return false
	}
	info, err := readProc(pid)
	return err == nil && info.StartTicks == ticks && info.State != 'Z'
}

// pollInterval is how often exits are polled where pidfd is unavailable.
const pollInterval = 200 * time.Millisecond

// waitExit blocks until the process (pid, ticks), which need not be a child,
// has exited. It watches a pidfd where the kernel has pidfd_open (5.3+) and
// polls /proc otherwise. It returns ctx's error if ctx ends first.
func waitExit(ctx context.Context, pid int, ticks uint64, clock clockwork.Clock) error {
	err := waitExitPidfd(ctx, pid, ticks)
	if err == nil || ctx.Err() != nil {
		return err
	}
	for running(pid, ticks) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-clock.After(pollInterval):
		}
	}
	return nil
}

// errNoPidfd says the pidfd path cannot be used; the caller polls.
var errNoPidfd = errors.New("pidfd unavailable")

func waitExitPidfd(ctx context.Context, pid int, ticks uint64) error {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return errNoPidfd
	}
	// The pidfd pins the process it was opened for; if that is not ours the
	// pid was recycled and ours has long exited.
	if !running(pid, ticks) {
		unix.Close(fd)
		return nil
	}
	// A non-blocking pidfd goes into the runtime's poller, so waiting costs
	// no thread and a deadline cancels it.
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return errNoPidfd
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	err = rc.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		return err != nil || n > 0
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return errNoPidfd
	}
	return nil
}

// signalGroup sends sig to the process group led by the task, but only
// while the leader's pid is provably still the task's (running or a zombie
// its shim has not reaped): after that the shim kills what is left of the
// group itself.
func signalGroup(pid int, ticks uint64, sig syscall.Signal) error {
	if !sameProcess(pid, ticks) {
		return nil
	}
	err := syscall.Kill(-pid, sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", pid, err)
	}
	return nil
}

// signalName names a signal the way ExitResult reports it ("SIGKILL").
func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return "signal " + strconv.Itoa(int(sig))
}

// exitRecordOf turns a wait status into an exit record. A task ended by a
// signal gets the shell's exit code 128+signal.
func exitRecordOf(ws syscall.WaitStatus, finished time.Time) exitRecord {
	if ws.Signaled() {
		return exitRecord{ExitCode: 128 + int(ws.Signal()), Signal: signalName(ws.Signal()), FinishedAt: finished}
	}
	return exitRecord{ExitCode: ws.ExitStatus(), FinishedAt: finished}
}

// buildEnv is the task's environment: the host's PATH only, then the task's
// own variables, then the agent's (which win). The result is sorted.
func buildEnv(hostPath string, layers ...map[string]string) ([]string, error) {
	env := map[string]string{}
	if hostPath != "" {
		env["PATH"] = hostPath
	}
	for _, layer := range layers {
		for k, v := range layer {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return nil, fmt.Errorf("task.config.env: invalid variable name %q", k)
			}
			if strings.ContainsRune(v, 0) {
				return nil, fmt.Errorf("task.config.env[%s]: value must not contain NUL", k)
			}
			env[k] = v
		}
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out, nil
}

// envValue returns the value of key in env ("K=V" entries).
func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// lookPath finds the executable for command: a command with a slash is
// taken relative to dir, any other is searched in the task's PATH.
func lookPath(command, pathEnv, dir string) (string, error) {
	if command == "" {
		return "", errors.New("task.config.command is required")
	}
	if strings.ContainsRune(command, '/') {
		p := command
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("command not found: %s", command)
		} else if err != nil {
			return "", fmt.Errorf("command %s: %w", command, err)
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			continue
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, command)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("command not found: %s (searched PATH=%s)", command, pathEnv)
}

func checkExecutable(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.IsDir() {
		return errors.New("is a directory")
	}
	if info.Mode()&0o111 == 0 {
		return errors.New("not executable")
	}
	return nil
}
