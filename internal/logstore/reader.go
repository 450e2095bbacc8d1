package logstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/jonboulle/clockwork"
)

// DefaultPollInterval is how often a following reader looks for new output.
const DefaultPollInterval = 200 * time.Millisecond

// ReadOptions say which part of a log to read.
type ReadOptions struct {
	// Tail, when > 0, starts at the last Tail lines (counted across rotated
	// files). 0 reads everything that is kept.
	Tail int
	// Follow keeps reading new output, also after rotations, until the
	// context ends. Without Follow, reading ends at the current end.
	Follow bool
	// PollInterval is how often a follower checks for new output. Default
	// DefaultPollInterval.
	PollInterval time.Duration
	// Clock drives the polling. Default the real clock.
	Clock clockwork.Clock
}

// Reader reads a stream's log files oldest first as one log. Create it with
// Open; it is not safe for concurrent use.
type Reader struct {
	ctx         context.Context
	dir, stream string
	opt         ReadOptions

	// files still to read, oldest first; files[0] is being read.
	files []*os.File
}

// Open opens the log of stream in dir. Without Follow, a stream that has no
// file yet is an error wrapping fs.ErrNotExist; with Follow, the reader waits
// for the file to appear. When ctx ends, a following reader returns io.EOF.
func Open(ctx context.Context, dir, stream string, opt ReadOptions) (*Reader, error) {
	if err := checkStream(stream); err != nil {
		return nil, err
	}
	if opt.Tail < 0 {
		return nil, fmt.Errorf("logstore: tail must not be negative, got %d", opt.Tail)
	}
	if opt.PollInterval <= 0 {
		opt.PollInterval = DefaultPollInterval
	}
	if opt.Clock == nil {
		opt.Clock = clockwork.NewRealClock()
	}
	files, err := openAll(dir, stream)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 && !opt.Follow {
		return nil, fmt.Errorf("logstore: no %s log in %s: %w", stream, dir, fs.ErrNotExist)
	}
	r := &Reader{ctx: ctx, dir: dir, stream: stream, opt: opt, files: files}
	if opt.Tail > 0 {
		if err := r.seekTail(opt.Tail); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// openAll opens the current file and the rotated ones, newest first so that
// a rotation in between shows up as the same file twice (dropped) rather
// than as a gap, and returns them oldest first.
func openAll(dir, stream string) ([]*os.File, error) {
	var newestFirst []*os.File
	var infos []os.FileInfo
	closeAll := func() {
		for _, f := range newestFirst {
			f.Close()
		}
	}
	paths := []string{currentPath(dir, stream)}
	for i := 1; ; i++ {
		p := rotatedPath(dir, stream, i)
		if _, err := os.Lstat(p); err != nil {
			break
		}
		paths = append(paths, p)
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("logstore: open log: %w", err)
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			closeAll()
			return nil, fmt.Errorf("logstore: stat log: %w", err)
		}
		if containsSameFile(infos, info) {
			f.Close()
			continue
		}
		newestFirst = append(newestFirst, f)
		infos = append(infos, info)
	}
	files := make([]*os.File, len(newestFirst))
	for i, f := range newestFirst {
		files[len(files)-1-i] = f
	}
	return files, nil
}

func containsSameFile(infos []os.FileInfo, info os.FileInfo) bool {
	for _, i := range infos {
		if os.SameFile(i, info) {
			return true
		}
	}
	return false
}

// seekTail drops whole files and positions the first kept file so that
// reading starts at the last n lines. A last line without a newline counts.
func (r *Reader) seekTail(n int) error {
	const block = 32 << 10
	buf := make([]byte, block)
	first := true // the very last byte of the log is still to be seen
	for i := len(r.files) - 1; i >= 0; i-- {
		info, err := r.files[i].Stat()
		if err != nil {
			return fmt.Errorf("logstore: stat log: %w", err)
		}
		end := info.Size()
		for end > 0 {
			start := max(end-block, 0)
			chunk := buf[:end-start]
			if _, err := r.files[i].ReadAt(chunk, start); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("logstore: read log: %w", err)
			}
			if first {
				first = false
				if chunk[len(chunk)-1] == '\n' {
					// The final newline ends the last line; it does not
					// start a new one.
					chunk = chunk[:len(chunk)-1]
				}
			}
			for {
				j := bytes.LastIndexByte(chunk, '\n')
				if j < 0 {
					break
				}
				n--
				if n == 0 {
					return r.startAt(i, start+int64(j)+1)
				}
				chunk = chunk[:j]
			}
			end = start
		}
	}
	return r.startAt(0, 0)
}

// startAt closes the files before index i and seeks files[i] to offset.
func (r *Reader) startAt(i int, offset int64) error {
	for _, f := range r.files[:i] {
		f.Close()
	}
	r.files = r.files[i:]
	if len(r.files) == 0 {
		return nil
	}
	if _, err := r.files[0].Seek(offset, io.SeekStart); err != nil {
		return fmt.Errorf("logstore: seek log: %w", err)
	}
	return nil
}

// Read reads the log in order. It returns io.EOF at the end of the newest
// file, or, when following, once the context has ended.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(r.files) > 0 {
			n, err := r.files[0].Read(p)
			if n > 0 {
				return n, nil
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, fmt.Errorf("logstore: read log: %w", err)
			}
			if len(r.files) > 1 {
				r.files[0].Close()
				r.files = r.files[1:]
				continue
			}
		}
		if !r.opt.Follow {
			return 0, io.EOF
		}
		switched, err := r.switchIfRotated()
		if err != nil {
			return 0, err
		}
		if switched {
			continue
		}
		select {
		case <-r.ctx.Done():
			return 0, io.EOF
		case <-r.opt.Clock.After(r.opt.PollInterval):
		}
	}
}

// switchIfRotated appends the current file when it is no longer the one the
// reader is at (the writer rotated, or the file appeared). The old file is
// kept in front: the writer finished it before renaming, so whatever it got
// since the last read is read before the new file.
func (r *Reader) switchIfRotated() (bool, error) {
	info, err := os.Stat(currentPath(r.dir, r.stream))
	if errors.Is(err, fs.ErrNotExist) {
		// Between the rename and the creation of the new file.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("logstore: stat log: %w", err)
	}
	if len(r.files) > 0 {
		cur, err := r.files[0].Stat()
		if err != nil {
			return false, fmt.Errorf("logstore: stat log: %w", err)
		}
		if os.SameFile(cur, info) {
			return false, nil
		}
	}
	f, err := os.Open(currentPath(r.dir, r.stream))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("logstore: open log: %w", err)
	}
	r.files = append(r.files, f)
	return true, nil
}

// Close closes the open files.
func (r *Reader) Close() error {
	for _, f := range r.files {
		f.Close()
	}
	r.files = nil
	return nil
}

var _ io.ReadCloser = (*Reader)(nil)
