package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/logstore"
)

// handler serves the agent's HTTP API: task logs and health.
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /v1/logs", a.serveLogs)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.ReasonNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	})
	return mux
}

// serveLogs streams a task's log:
// GET /v1/logs?alloc=<uid>&task=<name>&stream=stdout|stderr&follow=true&tail=N.
// The task may be left out when the allocation has one task.
func (a *Agent) serveLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	uid := q.Get("alloc")
	if uid == "" {
		writeError(w, http.StatusBadRequest, api.ReasonBadRequest, "alloc: the allocation uid is required")
		return
	}
	if problem := checkPathName(uid); problem != "" {
		writeError(w, http.StatusBadRequest, api.ReasonBadRequest, "alloc: %s", problem)
		return
	}
	stream := q.Get("stream")
	if stream == "" {
		stream = "stdout"
	}
	if stream != "stdout" && stream != "stderr" {
		writeError(w, http.StatusBadRequest, api.ReasonBadRequest, "stream: must be stdout or stderr, not %q", stream)
		return
	}
	var opt logstore.ReadOptions
	if s := q.Get("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, api.ReasonBadRequest, "tail: must be a non-negative number of lines, not %q", s)
			return
		}
		opt.Tail = n
	}
	if s := q.Get("follow"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, api.ReasonBadRequest, "follow: must be true or false, not %q", s)
			return
		}
		opt.Follow = b
	}

	tasks, err := a.logTasks(uid)
	if err != nil {
		writeError(w, http.StatusNotFound, api.ReasonNotFound, "allocation %s has no logs on node %s", uid, a.cfg.Name)
		return
	}
	task := q.Get("task")
	switch {
	case task == "" && len(tasks) == 1:
		task = tasks[0]
	case task == "":
		writeError(w, http.StatusBadRequest, api.ReasonBadRequest, "task: required, the allocation has tasks %s", strings.Join(tasks, ", "))
		return
	case api.CheckName(task) != "":
		writeError(w, http.StatusBadRequest, api.ReasonBadRequest, "task: %s", api.CheckName(task))
		return
	case !slices.Contains(tasks, task):
		writeError(w, http.StatusNotFound, api.ReasonNotFound, "allocation %s has no task %q on node %s", uid, task, a.cfg.Name)
		return
	}

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	cw := &countingWriter{w: w}
	if opt.Follow {
		// A follower may wait long for its first line: answer at once.
		w.WriteHeader(http.StatusOK)
		cw.Flush()
	}
	err = logstore.Copy(r.Context(), cw, taskLogDir(a.cfg.DataDir, uid, task), stream, opt)
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist) && cw.n == 0:
		// No output yet reads as an empty log.
		if cw.n == 0 && !opt.Follow {
			w.WriteHeader(http.StatusOK)
		}
	case cw.n == 0 && !opt.Follow:
		writeError(w, http.StatusInternalServerError, api.ReasonInternal, "reading the %s log of task %s: %v", stream, task, err)
	default:
		a.log.Warn("streaming a task log ended early", "alloc", uid, "task", task, "err", err)
	}
}

// logTasks lists the tasks of an allocation that have a log directory.
func (a *Agent) logTasks(uid string) ([]string, error) {
	entries, err := os.ReadDir(allocDir(a.cfg.DataDir, uid))
	if err != nil {
		return nil, err
	}
	var tasks []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if fi, err := os.Stat(taskLogDir(a.cfg.DataDir, uid, e.Name())); err == nil && fi.IsDir() {
			tasks = append(tasks, e.Name())
		}
	}
	if len(tasks) == 0 {
		return nil, fs.ErrNotExist
	}
	return tasks, nil
}

// countingWriter counts what was written, so that an error before the
// first byte can still become an error answer. It passes Flush on.
type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.w.(http.Flusher); ok {
		f.Flush()
	}
}

// writeError writes an api.Error as JSON.
func writeError(w http.ResponseWriter, status int, reason, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(&api.Error{Status: status, Reason: reason, Message: fmt.Sprintf(format, args...)})
}
