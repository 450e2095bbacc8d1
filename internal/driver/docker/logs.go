package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/herd-project/herd/internal/logstore"
)

// logCursor is the timestamp of the last line written per stream.
type logCursor struct {
	Stdout time.Time `json:"stdout,omitzero"`
	Stderr time.Time `json:"stderr,omitzero"`
}

// since is where to resume: the earlier of the two streams' positions.
func (c logCursor) since() time.Time {
	switch {
	case c.Stdout.IsZero() || c.Stderr.IsZero():
		if c.Stdout.IsZero() {
			return c.Stderr
		}
		return c.Stdout
	case c.Stdout.Before(c.Stderr):
		return c.Stdout
	default:
		return c.Stderr
	}
}

func readCursor(path string) (logCursor, error) {
	var c logCursor
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(data, &c)
}

func writeCursor(path string, c logCursor) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// lineWriter receives docker's "<RFC3339Nano timestamp> <text>" lines of
// one stream, drops the ones at or before skipUntil (already written by an
// earlier follower) and writes the text to out.
type lineWriter struct {
	out       io.Writer
	skipUntil time.Time
	partial   []byte

	mu   *sync.Mutex
	last *time.Time
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		if err := w.line(w.partial[:i+1]); err != nil {
			return 0, err
		}
		w.partial = w.partial[i+1:]
	}
}

// flush writes a last line that has no newline.
func (w *lineWriter) flush() error {
	if len(w.partial) == 0 {
		return nil
	}
	err := w.line(w.partial)
	w.partial = nil
	return err
}

func (w *lineWriter) line(l []byte) error {
	ts, text, ok := bytes.Cut(l, []byte(" "))
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if !ok || err != nil {
		// Not timestamped: write it whole rather than lose it.
		_, err := w.out.Write(l)
		return err
	}
	if !w.skipUntil.IsZero() && !t.After(w.skipUntil) {
		return nil
	}
	if _, err := w.out.Write(text); err != nil {
		return err
	}
	w.mu.Lock()
	*w.last = t
	w.mu.Unlock()
	return nil
}

// follower copies one container's logs into the task's log files until the
// container stops or ctx ends.
type follower struct {
	d           *Driver
	containerID string
	logDir      string
	cursorPath  string
}

func (f *follower) run(ctx context.Context) error {
	cursor, err := readCursor(f.cursorPath)
	if err != nil {
		return fmt.Errorf("read log cursor: %w", err)
	}
	stdout, err := logstore.NewWriter(f.logDir, "stdout", f.d.cfg.Log)
	if err != nil {
		return err
	}
	defer stdout.Close()
	stderr, err := logstore.NewWriter(f.logDir, "stderr", f.d.cfg.Log)
	if err != nil {
		return err
	}
	defer stderr.Close()

	var mu sync.Mutex
	cur := cursor
	outW := &lineWriter{out: stdout, skipUntil: cursor.Stdout, mu: &mu, last: &cur.Stdout}
	errW := &lineWriter{out: stderr, skipUntil: cursor.Stderr, mu: &mu, last: &cur.Stderr}
	save := func() {
		mu.Lock()
		c := cur
		mu.Unlock()
		if err := writeCursor(f.cursorPath, c); err != nil {
			f.d.cfg.Logger.Warn("docker: cannot save log position", "container", f.containerID, "err", err)
		}
	}
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true, Timestamps: true}
	if s := cursor.since(); !s.IsZero() {
		opts.Since = fmt.Sprintf("%d.%09d", s.Unix(), s.Nanosecond())
	}
	rc, err := f.d.client.ContainerLogs(ctx, f.containerID, opts)
	if err != nil {
		return err
	}
	defer rc.Close()

	// Save the position every second while the copy runs.
	done := make(chan struct{})
	var saver sync.WaitGroup
	saver.Go(func() {
		tick := f.d.cfg.Clock.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.Chan():
				save()
			}
		}
	})
	_, copyErr := stdcopy.StdCopy(outW, errW, rc)
	close(done)
	saver.Wait()
	if ctx.Err() == nil {
		// The stream ended: a last line without newline is complete. When
		// cancelled, an unfinished line is left for the next follower.
		outW.flush()
		errW.flush()
	}
	save()
	if copyErr != nil && ctx.Err() == nil {
		return copyErr
	}
	return nil
}
