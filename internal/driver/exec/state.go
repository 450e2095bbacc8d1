package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herd-project/herd/internal/driver"
	"github.com/herd-project/herd/internal/logstore"
)

// Files in a task's state directory.
const (
	inputFile   = "input.json"
	stateFile   = "state.json"
	exitFile    = "exit.json"
	shimLogFile = "shim.log"
)

// shimInput is what the driver hands the shim: everything needed to start
// the task, resolved (absolute command path, full environment).
type shimInput struct {
	ID        driver.TaskID `json:"id"`
	Namespace string        `json:"namespace,omitempty"`
	AllocName string        `json:"allocName,omitempty"`
	// Path is the resolved executable; Args[0] is the command as given.
	Path   string                 `json:"path"`
	Args   []string               `json:"args"`
	Env    []string               `json:"env"`
	Dir    string                 `json:"dir"`
	LogDir string                 `json:"logDir"`
	Log    logstore.WriterOptions `json:"log"`
	// Cgroup is nil when cgroups are unavailable.
	Cgroup *taskCgroup `json:"cgroup,omitempty"`
}

// shimState is written by the shim once the task runs.
type shimState struct {
	ShimPID int `json:"shimPID"`
	// ShimStartTicks and TaskStartTicks are field 22 of /proc/<pid>/stat:
	// with the pid they identify a process even after its pid is recycled.
	ShimStartTicks uint64    `json:"shimStartTicks"`
	TaskPID        int       `json:"taskPID"`
	TaskStartTicks uint64    `json:"taskStartTicks"`
	StartedAt      time.Time `json:"startedAt"`
}

// exitRecord is written by the shim when the task has exited, or by the
// driver when the shim vanished without writing one.
type exitRecord struct {
	ExitCode   int       `json:"exitCode"`
	Signal     string    `json:"signal,omitempty"`
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
	// Error says the driver cannot tell how the task ended.
	Error string `json:"error,omitempty"`
}

func (e exitRecord) result() driver.ExitResult {
	r := driver.ExitResult{ExitCode: e.ExitCode, Signal: e.Signal, OOMKilled: e.OOMKilled, FinishedAt: e.FinishedAt}
	if e.Error != "" {
		r.Err = errors.New(e.Error)
	}
	return r
}

// readyMessage is what the shim writes to the driver over the readiness
// pipe: the task's pid, or why it could not start.
type readyMessage struct {
	TaskPID int    `json:"taskPID,omitempty"`
	Error   string `json:"error,omitempty"`
}

// writeJSONAtomic writes v to path so that readers see either the old file
// or the complete new one, also across a crash.
func writeJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	// No fsync: these files describe processes, which do not outlive the
	// machine, so they only need to survive a crash of the agent or the
	// shim, and the rename makes them whole or absent for that.
	_, err = tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// readJSON reads path into v. A missing file is an error wrapping
// os.ErrNotExist.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// checkTaskID rejects IDs that cannot safely name a directory.
func checkTaskID(id driver.TaskID) error {
	if err := checkPathElement("allocUID", id.AllocUID); err != nil {
		return err
	}
	return checkPathElement("task", id.Task)
}

func checkPathElement(field, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("exec: %s is required", field)
	case v == "." || v == ".." || strings.ContainsAny(v, `/\`+"\x00"):
		return fmt.Errorf("exec: %s %q must not contain path separators or be \".\" or \"..\"", field, v)
	case len(v) > 200:
		return fmt.Errorf("exec: %s must be at most 200 characters", field)
	}
	return nil
}
