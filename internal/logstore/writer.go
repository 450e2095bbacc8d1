// Package logstore keeps the output of tasks as size-rotated files and reads
// it back. A task's stream (stdout or stderr) lives in <dir>/<stream>.log;
// when that file would grow past its size limit it becomes <stream>.log.1,
// older files shift to .2, .3, ... and the oldest beyond the kept count is
// deleted. Readers see the files oldest first as one continuous log, can
// start at the last N lines and can follow new output across rotations.
//
// One process writes a stream (the exec driver's shim); any number of
// processes read it. Following polls the file instead of using inotify, so
// the package needs nothing beyond the standard library and a clock.
package logstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

const (
	// DefaultMaxBytes is the size at which a log file is rotated.
	DefaultMaxBytes = 10 << 20
	// DefaultMaxFiles is how many rotated files are kept besides the
	// current one.
	DefaultMaxFiles = 3
)

// WriterOptions tune rotation. Zero values take the defaults.
type WriterOptions struct {
	// MaxBytes bounds the size of each file. Default DefaultMaxBytes.
	MaxBytes int64
	// MaxFiles is how many rotated files (<stream>.log.1 .. .MaxFiles) are
	// kept. Default DefaultMaxFiles.
	MaxFiles int
}

func (o WriterOptions) withDefaults() (WriterOptions, error) {
	if o.MaxBytes < 0 {
		return o, fmt.Errorf("logstore: MaxBytes must not be negative, got %d", o.MaxBytes)
	}
	if o.MaxFiles < 0 {
		return o, fmt.Errorf("logstore: MaxFiles must not be negative, got %d", o.MaxFiles)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxFiles == 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	return o, nil
}

// Writer appends to <dir>/<stream>.log and rotates it by size. It is safe
// for concurrent use, but only one Writer (in one process) may write a
// stream at a time.
type Writer struct {
	dir, stream string
	opt         WriterOptions

	mu     sync.Mutex
	file   *os.File
	size   int64
	closed bool
}

// NewWriter opens (creating dir and file if needed) the current log file of
// stream in dir. Existing content is kept and appended to.
func NewWriter(dir, stream string, opt WriterOptions) (*Writer, error) {
	if err := checkStream(stream); err != nil {
		return nil, err
	}
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("logstore: create log dir: %w", err)
	}
	w := &Writer{dir: dir, stream: stream, opt: opt}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// Write appends p. A write that does not fit into the current file goes to a
// fresh file after rotation; only a write larger than MaxBytes is split.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, os.ErrClosed
	}
	written := 0
	for len(p) > 0 {
		room := w.opt.MaxBytes - w.size
		if int64(len(p)) > room && w.size > 0 {
			if err := w.rotate(); err != nil {
				return written, err
			}
			continue
		}
		chunk := p[:min(int64(len(p)), room)]
		n, err := w.file.Write(chunk)
		written += n
		w.size += int64(n)
		if err != nil {
			return written, fmt.Errorf("logstore: write %s: %w", w.file.Name(), err)
		}
		p = p[n:]
	}
	return written, nil
}

// Close closes the current file. Further writes fail.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.file.Close()
}

func (w *Writer) open() error {
	f, err := os.OpenFile(currentPath(w.dir, w.stream), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("logstore: open log: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("logstore: stat log: %w", err)
	}
	w.file, w.size = f, info.Size()
	return nil
}

// rotate shifts <stream>.log.i to .i+1 (dropping the oldest), moves the
// current file to .1 and opens a new current file. Readers following the
// stream notice the new file and finish the old one first.
func (w *Writer) rotate() error {
	if err := w.file.Close(); err != nil {
		return fmt.Errorf("logstore: close before rotation: %w", err)
	}
	oldest := rotatedPath(w.dir, w.stream, w.opt.MaxFiles)
	if err := os.Remove(oldest); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("logstore: rotate: %w", err)
	}
	for i := w.opt.MaxFiles - 1; i >= 1; i-- {
		err := os.Rename(rotatedPath(w.dir, w.stream, i), rotatedPath(w.dir, w.stream, i+1))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("logstore: rotate: %w", err)
		}
	}
	if err := os.Rename(currentPath(w.dir, w.stream), rotatedPath(w.dir, w.stream, 1)); err != nil {
		return fmt.Errorf("logstore: rotate: %w", err)
	}
	return w.open()
}

func currentPath(dir, stream string) string {
	return filepath.Join(dir, stream+".log")
}

func rotatedPath(dir, stream string, i int) string {
	return currentPath(dir, stream) + "." + strconv.Itoa(i)
}

// checkStream rejects stream names that are not a plain file name.
func checkStream(stream string) error {
	switch {
	case stream == "":
		return errors.New("logstore: stream name is required")
	case stream == "." || stream == ".." || strings.ContainsAny(stream, `/\`+"\x00"):
		return fmt.Errorf("logstore: stream name %q must be a plain file name", stream)
	}
	return nil
}

var _ io.WriteCloser = (*Writer)(nil)
