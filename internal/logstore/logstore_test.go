package logstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

func TestWriterRotates(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir, "stdout", WriterOptions{MaxBytes: 10, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n", "ffff\n", "gg\n"} {
		write(t, w, line)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"stdout.log":   "gg\n",
		"stdout.log.1": "eeee\nffff\n",
		"stdout.log.2": "cccc\ndddd\n",
	}
	for name, content := range want {
		if got := readFile(t, filepath.Join(dir, name)); got != content {
			t.Errorf("%s = %q, want %q", name, got, content)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "stdout.log.3")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stdout.log.3 should not exist beyond MaxFiles=2: %v", err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write after Close succeeded")
	}
}

func TestWriterSplitsOversizedWrite(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir, "stderr", WriterOptions{MaxBytes: 4, MaxFiles: 5})
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, "ab")
	n, err := w.Write([]byte("0123456789"))
	if err != nil || n != 10 {
		t.Fatalf("Write = %d, %v; want 10, nil", n, err)
	}
	w.Close()
	want := map[string]string{
		"stderr.log":   "89",
		"stderr.log.1": "4567",
		"stderr.log.2": "0123",
		"stderr.log.3": "ab",
	}
	for name, content := range want {
		if got := readFile(t, filepath.Join(dir, name)); got != content {
			t.Errorf("%s = %q, want %q", name, got, content)
		}
	}
}

func TestWriterAppendsToExistingFile(t *testing.T) {
	dir := t.TempDir()
	opt := WriterOptions{MaxBytes: 8, MaxFiles: 1}
	w, err := NewWriter(dir, "stdout", opt)
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, "one\n")
	w.Close()
	w, err = NewWriter(dir, "stdout", opt)
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, "two\n")   // fits: 8 bytes
	write(t, w, "three\n") // rotates
	w.Close()
	if got := readFile(t, filepath.Join(dir, "stdout.log.1")); got != "one\ntwo\n" {
		t.Errorf("stdout.log.1 = %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "stdout.log")); got != "three\n" {
		t.Errorf("stdout.log = %q", got)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, stream := range []string{"", ".", "..", "a/b", `a\b`} {
		if _, err := NewWriter(dir, stream, WriterOptions{}); err == nil {
			t.Errorf("NewWriter(stream %q) succeeded", stream)
		}
		if _, err := Open(context.Background(), dir, stream, ReadOptions{}); err == nil {
			t.Errorf("Open(stream %q) succeeded", stream)
		}
	}
	if _, err := NewWriter(dir, "stdout", WriterOptions{MaxBytes: -1}); err == nil || !strings.Contains(err.Error(), "MaxBytes") {
		t.Errorf("negative MaxBytes: err = %v", err)
	}
	if _, err := Open(context.Background(), dir, "stdout", ReadOptions{Tail: -1}); err == nil || !strings.Contains(err.Error(), "tail") {
		t.Errorf("negative tail: err = %v", err)
	}
	if _, err := Open(context.Background(), dir, "stdout", ReadOptions{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing log: err = %v, want fs.ErrNotExist", err)
	}
}

// writeLog writes lines through a Writer with a small MaxBytes so that they
// spread over several files.
func writeLog(t *testing.T, dir, content string) {
	t.Helper()
	w, err := NewWriter(dir, "stdout", WriterOptions{MaxBytes: 6, MaxFiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, line := range strings.SplitAfter(content, "\n") {
		write(t, w, line)
	}
}

func readAll(t *testing.T, dir string, opt ReadOptions) string {
	t.Helper()
	var sb strings.Builder
	if err := Copy(context.Background(), &sb, dir, "stdout", opt); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

func TestTail(t *testing.T) {
	const five = "l1\nl2\nl3\nl4\nl5\n"
	for _, tc := range []struct {
		name    string
		content string
		tail    int
		want    string
	}{
		{"all", five, 0, five},
		{"last one", five, 1, "l5\n"},
		{"across files", five, 3, "l3\nl4\nl5\n"},
		{"exactly all", five, 5, five},
		{"more than all", five, 50, five},
		{"unterminated last line", "l1\nl2\nl3", 2, "l2\nl3"},
		{"empty lines count", "a\n\n\nb\n", 3, "\n\nb\n"},
		{"long lines split over files", "0123456789abc\nxy\n", 2, "0123456789abc\nxy\n"},
		{"long line last", "ab\n0123456789abc\n", 1, "0123456789abc\n"},
		{"empty", "", 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLog(t, dir, tc.content)
			if got := readAll(t, dir, ReadOptions{Tail: tc.tail}); got != tc.want {
				t.Errorf("tail %d = %q, want %q", tc.tail, got, tc.want)
			}
		})
	}
}

func TestTailSpansManyBlocks(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir, "stdout", WriterOptions{MaxBytes: 100 << 10, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		write(t, w, fmt.Sprintf("line %05d\n", i))
	}
	w.Close()
	got := readAll(t, dir, ReadOptions{Tail: 12000})
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 12000 || lines[0] != "line 08000" || lines[len(lines)-1] != "line 19999" {
		t.Fatalf("got %d lines from %q to %q", len(lines), lines[0], lines[len(lines)-1])
	}
}

// follower reads a followed log line by line in the background.
type follower struct {
	lines  chan string
	done   chan struct{} // closed when Copy returned, with its error in err
	err    error
	cancel context.CancelFunc
}

func follow(t *testing.T, dir string, opt ReadOptions) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	f := &follower{lines: make(chan string, 100), done: make(chan struct{}), cancel: cancel}
	opt.Follow = true
	opt.PollInterval = 5 * time.Millisecond
	go func() {
		f.err = Copy(ctx, pw, dir, "stdout", opt)
		pw.Close()
		close(f.done)
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
		close(f.lines)
	}()
	t.Cleanup(func() {
		cancel()
		pr.Close() // unblocks a Copy stuck writing to a reader nobody drains
		<-f.done
	})
	return f
}

func (f *follower) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-f.lines:
			if got != w {
				t.Fatalf("followed line = %q, want %q", got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for line %q", w)
		}
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir, "stdout", WriterOptions{MaxBytes: 12, MaxFiles: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write(t, w, "old1\nold2\n")
	f := follow(t, dir, ReadOptions{Tail: 1})
	f.expect(t, "old2")
	write(t, w, "new1\n") // rotates: old content moves to stdout.log.1
	f.expect(t, "new1")
	// Several rotations between two reads of the follower are not followed
	// (only the newest file is), but one rotation right after a write is:
	// the follower finishes the old file before the new one.
	write(t, w, "new2\n")
	write(t, w, "new3\n") // rotates
	f.expect(t, "new2", "new3")
	write(t, w, "partial")
	write(t, w, " line\n")
	f.expect(t, "partial line")
	f.cancel()
	select {
	case <-f.done:
		if f.err != nil {
			t.Fatalf("Copy after cancel = %v, want nil", f.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end with its context")
	}
}

func TestFollowWaitsForLog(t *testing.T) {
	dir := t.TempDir()
	f := follow(t, dir, ReadOptions{})
	w, err := NewWriter(dir, "stdout", WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write(t, w, "hello\n")
	f.expect(t, "hello")
}

func TestCopyFlushes(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, "a\nb\n")
	rec := httptest.NewRecorder()
	if err := Copy(context.Background(), rec, dir, "stdout", ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	if !rec.Flushed || rec.Body.String() != "a\nb\n" {
		t.Fatalf("flushed=%v body=%q", rec.Flushed, rec.Body.String())
	}
}
