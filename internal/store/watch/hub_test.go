package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/herd-project/herd/internal/store/mvcc"
)

const waitFor = 10 * time.Second

var quiet = slog.New(slog.DiscardHandler)

// env is a hub over a real store in a temporary directory.
type env struct {
	t      *testing.T
	st     *mvcc.Store
	hub    *Hub
	rounds chan struct{} // signalled after every catch-up round
}

func newEnv(t *testing.T, opts Options) *env { return newEnvWith(t, opts, nil) }

// newEnvWith puts wrap, if not nil, between the hub and the store's history.
func newEnvWith(t *testing.T, opts Options, wrap func(*mvcc.Store) History) *env {
	t.Helper()
	st, err := mvcc.Open(filepath.Join(t.TempDir(), "db"), mvcc.Options{NoSync: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, rounds: make(chan struct{}, 1)}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	var src History = st
	if wrap != nil {
		src = wrap(st)
	}
	e.hub = newHub(src, opts, func() {
		select {
		case e.rounds <- struct{}{}:
		default:
		}
	})
	st.SetNotifier(e.hub)
	t.Cleanup(func() {
		e.hub.Close()
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// write runs fn in one write transaction and returns the store revision.
func (e *env) write(fn func(w *mvcc.WriteTxn)) int64 {
	e.t.Helper()
	w := e.st.Write()
	fn(w)
	rev := w.Rev()
	if err := w.End(); err != nil {
		e.t.Fatal(err)
	}
	return rev
}

func (e *env) put(key, val string) int64 {
	e.t.Helper()
	return e.write(func(w *mvcc.WriteTxn) {
		if err := w.Put([]byte(key), []byte(val), 0); err != nil {
			e.t.Fatal(err)
		}
	})
}

func (e *env) del(key, end string) int64 {
	e.t.Helper()
	return e.write(func(w *mvcc.WriteTxn) { w.DeleteRange([]byte(key), []byte(end)) })
}

// waitState waits until the catch-up loop has brought the watcher to st.
func (e *env) waitState(s *Stream, id WatchID, st state) {
	e.t.Helper()
	deadline := time.After(waitFor)
	for {
		e.hub.mu.Lock()
		w := s.watchers[id]
		ok := w != nil && w.state == st
		e.hub.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-e.rounds:
		case <-deadline:
			e.t.Fatalf("watcher %d never reached state %d", id, st)
		}
	}
}

// reader hands out a stream's responses one by one.
type reader struct {
	t   *testing.T
	s   *Stream
	buf []Response
}

func (r *reader) next() Response {
	r.t.Helper()
	deadline := time.After(waitFor)
	for len(r.buf) == 0 {
		select {
		case <-r.s.Ready():
			r.buf = r.s.Take()
		case <-deadline:
			r.t.Fatal("no response")
		}
	}
	resp := r.buf[0]
	r.buf = r.buf[1:]
	return resp
}

// none checks that nothing is queued. Notify runs before a write returns, so
// after a write this sees everything synced watchers were given.
func (r *reader) none() {
	r.t.Helper()
	r.buf = append(r.buf, r.s.Take()...)
	if len(r.buf) > 0 {
		r.t.Fatalf("unexpected responses: %s", fmtResps(r.buf))
	}
}

// events reads responses until it has n events, checking each response.
func (r *reader) events(id WatchID, n int) []*mvccpb.Event {
	r.t.Helper()
	var evs []*mvccpb.Event
	for len(evs) < n {
		resp := r.next()
		if resp.WatchID != id || len(resp.Events) == 0 || resp.CompactRevision != 0 {
			r.t.Fatalf("want events for %d, got %s", id, fmtResps([]Response{resp}))
		}
		if last := resp.Events[len(resp.Events)-1].Kv.ModRevision; resp.Revision < last {
			r.t.Fatalf("response revision %d below its last event %d", resp.Revision, last)
		}
		evs = append(evs, resp.Events...)
	}
	return evs
}

func fmtEvents(evs []*mvccpb.Event) string {
	s := ""
	for _, ev := range evs {
		s += fmt.Sprintf("%s %s@%d=%q ", ev.Type, ev.Kv.Key, ev.Kv.ModRevision, ev.Kv.Value)
	}
	return s
}

func fmtResps(rs []Response) string {
	s := ""
	for _, r := range rs {
		s += fmt.Sprintf("{id %d rev %d compact %d: %s} ", r.WatchID, r.Revision, r.CompactRevision, fmtEvents(r.Events))
	}
	return s
}

var (
	noPut    Filter = func(ev *mvccpb.Event) bool { return ev.Type == mvccpb.PUT }
	noDelete Filter = func(ev *mvccpb.Event) bool { return ev.Type == mvccpb.DELETE }
)

// script writes revisions 2 to 7.
func script(e *env) {
	e.put("a", "1")                  // 2
	e.put("b", "1")                  // 3
	e.put("c", "1")                  // 4
	e.del("b", "")                   // 5
	e.write(func(w *mvcc.WriteTxn) { // 6
		w.Put([]byte("a"), []byte("2"), 0)
		w.Put([]byte("d"), []byte("1"), 0)
	})
	e.del("a", "c") // 7
}

func short(evs []*mvccpb.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = fmt.Sprintf("%s %s@%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision)
	}
	return out
}

func TestWatchRanges(t *testing.T) {
	all := []string{"PUT a@2", "PUT b@3", "PUT c@4", "DELETE b@5", "PUT a@6", "PUT d@6", "DELETE a@7"}
	tests := []struct {
		name     string
		key, end string
		filters  []Filter
		want     []string
	}{
		{"single", "a", "", nil, []string{"PUT a@2", "PUT a@6", "DELETE a@7"}},
		{"range", "a", "c", nil, []string{"PUT a@2", "PUT b@3", "DELETE b@5", "PUT a@6", "DELETE a@7"}},
		{"from key", "b", "\x00", nil, []string{"PUT b@3", "PUT c@4", "DELETE b@5", "PUT d@6"}},
		{"all", "", "\x00", nil, all},
		{"no put", "", "\x00", []Filter{noPut}, []string{"DELETE b@5", "DELETE a@7"}},
		{"no delete", "a", "", []Filter{noDelete}, []string{"PUT a@2", "PUT a@6"}},
		{"both filters", "a", "", []Filter{noPut, noDelete}, nil},
		{"empty key", "", "", nil, nil},
		{"range beyond keys", "e", "z", nil, nil},
	}
	for _, tt := range tests {
		// from: 0 watches before the writes, otherwise after them.
		for _, from := range []int64{0, 2, 4} {
			t.Run(fmt.Sprintf("%s/from%d", tt.name, from), func(t *testing.T) {
				e := newEnv(t, Options{})
				s := e.hub.NewStream()
				r := &reader{t: t, s: s}
				if from == 0 {
					id, err := s.Watch(AutoWatchID, []byte(tt.key), []byte(tt.end), 0, tt.filters...)
					if err != nil {
						t.Fatal(err)
					}
					script(e)
					got := short(r.events(id, len(tt.want)))
					if !slices.Equal(got, tt.want) {
						t.Fatalf("got %v, want %v", got, tt.want)
					}
					r.none()
					return
				}
				script(e)
				id, err := s.Watch(AutoWatchID, []byte(tt.key), []byte(tt.end), from, tt.filters...)
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				for _, ev := range tt.want {
					_, rev, _ := strings.Cut(ev, "@")
					if n, _ := strconv.ParseInt(rev, 10, 64); n >= from {
						want = append(want, ev)
					}
				}
				got := short(r.events(id, len(want)))
				if !slices.Equal(got, want) {
					t.Fatalf("got %v, want %v", got, want)
				}
				e.waitState(s, id, stateSynced)
				r.none()
				// Live events follow the replayed ones.
				rev := e.put("a", "3")
				if tt.key == "a" && tt.end == "" && len(tt.filters) == 0 {
					if got := short(r.events(id, 1)); got[0] != fmt.Sprintf("PUT a@%d", rev) {
						t.Fatalf("live event %v", got)
					}
				}
			})
		}
	}
}

func TestLiveResponsePerRevision(t *testing.T) {
	e := newEnv(t, Options{})
	s := e.hub.NewStream()
	r := &reader{t: t, s: s}
	id, _ := s.Watch(AutoWatchID, []byte("a"), []byte("z"), 0)
	script(e)
	for _, want := range []struct {
		rev int64
		n   int
	}{{2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 2}, {7, 1}} {
		resp := r.next()
		if resp.WatchID != id || resp.Revision != want.rev || len(resp.Events) != want.n {
			t.Fatalf("got %s, want revision %d with %d events", fmtResps([]Response{resp}), want.rev, want.n)
		}
	}
	// Full values, and deletes carry only key and revision.
	e.put("k", "v")
	ev := r.next().Events[0]
	if string(ev.Kv.Value) != "v" || ev.Kv.Version != 1 || ev.Kv.CreateRevision != ev.Kv.ModRevision {
		t.Fatalf("put event %v", ev)
	}
}

func TestWatchErrors(t *testing.T) {
	e := newEnv(t, Options{})
	s := e.hub.NewStream()
	tests := []struct {
		name     string
		key, end string
		rev      int64
		want     error
	}{
		{"end before key", "b", "a", 0, ErrEmptyRange},
		{"end equals key", "b", "b", 0, ErrEmptyRange},
		{"negative revision", "a", "", -1, ErrNegativeRev},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Watch(AutoWatchID, []byte(tt.key), []byte(tt.end), tt.rev); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWatchIDs(t *testing.T) {
	e := newEnv(t, Options{})
	s := e.hub.NewStream()
	steps := []struct {
		id      WatchID
		cancel  bool
		want    WatchID
		wantErr error
	}{
		{id: AutoWatchID, want: 0},
		{id: AutoWatchID, want: 1},
		{id: 3, want: 3},
		{id: AutoWatchID, want: 2},
		{id: AutoWatchID, want: 4}, // skips the client's 3
		{id: 3, wantErr: ErrDuplicateID},
		{id: 3, cancel: true},
		{id: 3, cancel: true, wantErr: ErrNotFound},
		{id: 3, want: 3}, // free again
		{id: -7, want: -7},
		{id: AutoWatchID, want: 5}, // IDs are not reused by auto assignment
	}
	for i, st := range steps {
		if st.cancel {
			if err := s.Cancel(st.id); !errors.Is(err, st.wantErr) {
				t.Fatalf("step %d: cancel %d: %v, want %v", i, st.id, err, st.wantErr)
			}
			continue
		}
		id, err := s.Watch(st.id, []byte("a"), nil, 0)
		if !errors.Is(err, st.wantErr) || (err == nil && id != st.want) {
			t.Fatalf("step %d: watch %d: got %d, %v; want %d, %v", i, st.id, id, err, st.want, st.wantErr)
		}
	}
	// IDs are per stream.
	if id, _ := e.hub.NewStream().Watch(AutoWatchID, []byte("a"), nil, 0); id != 0 {
		t.Fatalf("first ID of a new stream: %d", id)
	}
}

func TestCancelDropsQueued(t *testing.T) {
	e := newEnv(t, Options{})
	s := e.hub.NewStream()
	r := &reader{t: t, s: s}
	a, _ := s.Watch(AutoWatchID, []byte("a"), nil, 0)
	b, _ := s.Watch(AutoWatchID, []byte("a"), nil, 0)
	e.put("a", "1")
	if err := s.Cancel(a); err != nil {
		t.Fatal(err)
	}
	if resp := r.next(); resp.WatchID != b {
		t.Fatalf("got response for %d after cancel", resp.WatchID)
	}
	e.put("a", "2")
	if resp := r.next(); resp.WatchID != b {
		t.Fatalf("got response for %d after cancel", resp.WatchID)
	}
	r.none()
}

func TestFutureStartRevision(t *testing.T) {
	e := newEnv(t, Options{})
	s := e.hub.NewStream()
	r := &reader{t: t, s: s}
	start := e.st.Rev() + 3
	id, _ := s.Watch(AutoWatchID, []byte("a"), nil, start)
	if !s.Synced(id) {
		t.Fatal("future watcher not synced")
	}
	e.put("a", "1")
	e.put("a", "2")
	// No progress before the start revision is reached.
	s.RequestProgress(id)
	if s.RequestProgressAll() {
		t.Fatal("progress all granted before the start revision")
	}
	r.none()
	rev := e.put("a", "3")
	if rev != start {
		t.Fatalf("revision %d, want %d", rev, start)
	}
	if got := short(r.events(id, 1)); got[0] != fmt.Sprintf("PUT a@%d", start) {
		t.Fatalf("got %v", got)
	}
	s.RequestProgress(id)
	if resp := r.next(); resp.WatchID != id || resp.Revision != start || len(resp.Events) != 0 {
		t.Fatalf("progress %s", fmtResps([]Response{resp}))
	}
}

func TestCompaction(t *testing.T) {
	e := newEnv(t, Options{})
	script(e)
	if _, err := e.st.Compact(4); err != nil {
		t.Fatal(err)
	}
	s := e.hub.NewStream()
	r := &reader{t: t, s: s}

	id, _ := s.Watch(7, []byte("a"), []byte("z"), 3)
	resp := r.next()
	if resp.WatchID != id || resp.CompactRevision != 4 || resp.Revision != 0 || len(resp.Events) != 0 {
		t.Fatalf("want compaction notice, got %s", fmtResps([]Response{resp}))
	}
	e.waitState(s, id, stateCompacted)
	// Like etcd it stays on the stream until canceled: it is not synced,
	// holds its ID and blocks progress for the whole stream.
	if s.Synced(id) || s.RequestProgressAll() {
		t.Fatal("compacted watcher counted as synced")
	}
	if _, err := s.Watch(id, []byte("a"), nil, 0); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("reusing a compacted watcher's ID: %v", err)
	}
	e.put("b", "2")
	r.none()
	if err := s.Cancel(id); err != nil {
		t.Fatal(err)
	}

	// The compacted revision itself is still watchable: what survives of
	// it (the put of c) is replayed, as in etcd.
	id, _ = s.Watch(AutoWatchID, []byte("a"), []byte("z"), 4)
	got := short(r.events(id, 6))
	want := []string{"PUT c@4", "DELETE b@5", "PUT a@6", "PUT d@6", "DELETE a@7", "PUT b@8"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestSlowConsumerNeverBlocksWriters(t *testing.T) {
	e := newEnv(t, Options{QueueLen: 2, ChunkRevs: 3})
	s := e.hub.NewStream()
	r := &reader{t: t, s: s}
	id, _ := s.Watch(AutoWatchID, []byte("k"), []byte("l"), 0)
	other, _ := s.Watch(AutoWatchID, []byte("x"), nil, 0)

	const n = 50
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			e.put(fmt.Sprintf("k%02d", i%7), fmt.Sprint(i))
		}
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("writers blocked by a watcher nobody reads")
	}
	if s.Synced(id) {
		t.Fatal("watcher still synced with a full queue")
	}
	if !s.Synced(other) {
		t.Fatal("idle watcher lost sync")
	}
	if s.RequestProgressAll() {
		t.Fatal("progress with an unsynced watcher")
	}
	evs := r.events(id, n)
	for i, ev := range evs {
		if ev.Kv.ModRevision != int64(i+2) || string(ev.Kv.Value) != fmt.Sprint(i) {
			t.Fatalf("event %d: %s", i, fmtEvents([]*mvccpb.Event{ev}))
		}
	}
	e.waitState(s, id, stateSynced)
	r.none()
	rev := e.put("k00", "live")
	if got := short(r.events(id, 1)); got[0] != fmt.Sprintf("PUT k00@%d", rev) {
		t.Fatalf("live after catch-up: %v", got)
	}
}

func TestProgress(t *testing.T) {
	e := newEnv(t, Options{QueueLen: 1})
	s := e.hub.NewStream()
	r := &reader{t: t, s: s}

	if !s.RequestProgressAll() {
		t.Fatal("empty stream refused")
	}
	r.none()

	a, _ := s.Watch(AutoWatchID, []byte("a"), nil, 0)
	b, _ := s.Watch(AutoWatchID, []byte("b"), nil, 0)
	rev := e.put("c", "1")
	s.RequestProgress(b)
	if resp := r.next(); resp.WatchID != b || resp.Revision != rev || len(resp.Events) != 0 {
		t.Fatalf("progress %s", fmtResps([]Response{resp}))
	}
	if !s.RequestProgressAll() {
		t.Fatal("synced stream refused")
	}
	if resp := r.next(); resp.WatchID != ProgressWatchID || resp.Revision != rev {
		t.Fatalf("progress all %s", fmtResps([]Response{resp}))
	}

	// a falls behind: the queue holds one response.
	e.put("a", "1")
	e.put("a", "2")
	if s.Synced(a) || s.RequestProgressAll() {
		t.Fatal("a still synced")
	}
	s.RequestProgress(a)
	if got := short(r.events(a, 2)); got[1] != fmt.Sprintf("PUT a@%d", rev+2) {
		t.Fatalf("got %v", got)
	}
	e.waitState(s, a, stateSynced)
	r.none()
	if !s.RequestProgressAll() {
		t.Fatal("refused after catch-up")
	}
	if resp := r.next(); resp.WatchID != ProgressWatchID || resp.Revision != rev+2 {
		t.Fatalf("progress all %s", fmtResps([]Response{resp}))
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t, Options{})
	s := e.hub.NewStream()
	if _, err := s.Watch(AutoWatchID, []byte("a"), nil, 0); err != nil {
		t.Fatal(err)
	}
	closed := e.hub.NewStream()
	closed.Close()
	select {
	case <-closed.Done():
	default:
		t.Fatal("closed stream not done")
	}
	if _, err := closed.Watch(AutoWatchID, []byte("a"), nil, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("watch on closed stream: %v", err)
	}

	e.hub.Close()
	e.hub.Close() // idempotent
	select {
	case <-s.Done():
	default:
		t.Fatal("stream not done after hub close")
	}
	<-e.hub.NewStream().Done()
	e.put("a", "1") // Notify after Close does nothing
	if q := s.Take(); len(q) != 0 {
		t.Fatalf("responses after close: %s", fmtResps(q))
	}
	if s.RequestProgressAll() {
		t.Fatal("progress on a closed stream")
	}
}

// failingHistory fails Events while fail is set.
type failingHistory struct {
	*mvcc.Store
	fail atomic.Bool
}

func (f *failingHistory) Events(from, to int64, fn func(int64, []*mvccpb.Event) bool) error {
	if f.fail.Load() {
		return errors.New("disk unavailable")
	}
	return f.Store.Events(from, to, fn)
}

func TestRetryAfterHistoryError(t *testing.T) {
	clock := clockwork.NewFakeClock()
	fh := &failingHistory{}
	fh.fail.Store(true)
	e := newEnvWith(t, Options{Clock: clock, RetryInterval: time.Second}, func(st *mvcc.Store) History {
		fh.Store = st
		return fh
	})
	script(e)
	s := e.hub.NewStream()
	r := &reader{t: t, s: s}
	id, _ := s.Watch(AutoWatchID, []byte("a"), nil, 2)

	// The failed read leaves the watcher unsynced until the retry is due.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	r.none()
	if s.Synced(id) {
		t.Fatal("synced without reading history")
	}
	fh.fail.Store(false)
	clock.Advance(time.Second)
	if got := short(r.events(id, 3)); !slices.Equal(got, []string{"PUT a@2", "PUT a@6", "DELETE a@7"}) {
		t.Fatalf("got %v", got)
	}
	e.waitState(s, id, stateSynced)
}
