package exec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/herd-project/herd/internal/driver"
)

// startAbortGrace is how long an aborted Start still waits for the shim to
// report, so that it can kill the task it started.
const startAbortGrace = 5 * time.Second

// spawn starts the shim for the task described by dir/input.json and waits
// until the shim reports the task running. On failure neither the shim nor
// the task is left behind; the caller removes the directory and cgroup.
func (d *Driver) spawn(ctx context.Context, dir string, in *shimInput) (*task, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create readiness pipe: %w", err)
	}
	defer readyR.Close()
	shimLog, err := os.OpenFile(filepath.Join(dir, shimLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		readyW.Close()
		return nil, fmt.Errorf("create shim log: %w", err)
	}
	cmd := &osexec.Cmd{
		Path:       d.cfg.ShimPath,
		Args:       []string{d.cfg.ShimPath},
		Env:        shimEnvironment(dir),
		Dir:        "/", // pin no directory of the agent's
		Stdout:     shimLog,
		Stderr:     shimLog,
		ExtraFiles: []*os.File{readyW},
		// Its own session: the shim outlives the agent and gets none of the
		// signals meant for the agent's process group or terminal.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	readyW.Close()
	shimLog.Close()
	if err != nil {
		return nil, fmt.Errorf("start shim %s: %w", d.cfg.ShimPath, err)
	}
	// While the driver lives it is the shim's parent and must reap it.
	shimExited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(shimExited)
	}()

	var msg readyMessage
	ready := readReady(readyR)
	select {
	case res := <-ready:
		msg, err = res.msg, res.err
	case <-ctx.Done():
		// Let the shim finish starting, so that state.json names the task
		// to kill, unless it hangs.
		select {
		case <-ready:
		case <-d.cfg.Clock.After(startAbortGrace):
		}
		err = fmt.Errorf("waiting for the task to start: %w", ctx.Err())
	}
	if err == nil && msg.Error == "" && msg.TaskPID > 0 {
		t := &task{id: in.ID, dir: dir, input: *in, exit: driver.NewExit()}
		if err = readJSON(filepath.Join(dir, stateFile), &t.state); err == nil {
			d.mu.Lock()
			d.tasks[in.ID] = t
			d.mu.Unlock()
			go func() {
				<-shimExited
				d.finish(t)
			}()
			return t, nil
		}
	}

	// The start failed: whatever got started goes.
	var st shimState
	if readJSON(filepath.Join(dir, stateFile), &st) == nil {
		signalGroup(st.TaskPID, st.TaskStartTicks, syscall.SIGKILL)
	}
	cmd.Process.Kill()
	<-shimExited
	switch {
	case msg.Error != "":
		return nil, errors.New(msg.Error)
	case err != nil:
		return nil, err
	}
	reason := "shim exited before starting the task"
	if last := lastLine(filepath.Join(dir, shimLogFile)); last != "" {
		reason += ": " + last
	}
	return nil, errors.New(reason)
}

// shimEnvironment is the shim's environment: where its task is, and the
// Go runtime's diagnostic settings of the agent, so that a shim behaves
// like the agent that started it. The task's environment is in input.json.
func shimEnvironment(dir string) []string {
	env := []string{shimEnv + "=1", shimDirEnv + "=" + dir}
	for _, key := range []string{"GOTRACEBACK", "GODEBUG", "GORACE"} {
		if v, ok := os.LookupEnv(key); ok {
			env = append(env, key+"="+v)
		}
	}
	return env
}

// readyResult is the shim's readiness message, or why there is none.
type readyResult struct {
	msg readyMessage
	err error
}

// readReady reads the shim's one message in the background; the shim
// closes the pipe after it, or dies (an empty message).
func readReady(r io.Reader) <-chan readyResult {
	ch := make(chan readyResult, 1)
	go func() {
		var res readyResult
		data, err := io.ReadAll(r)
		switch {
		case err != nil:
			res.err = fmt.Errorf("read shim readiness: %w", err)
		case len(bytes.TrimSpace(data)) > 0:
			if err := json.Unmarshal(data, &res.msg); err != nil {
				res.err = fmt.Errorf("decode shim readiness %q: %w", data, err)
			}
		}
		ch <- res
	}()
	return ch
}
