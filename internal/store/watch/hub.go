package watch

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/herd-project/herd/internal/store/mvcc"
)

// History is the part of the engine the hub reads (*mvcc.Store).
type History interface {
	// Rev is the latest durable revision.
	Rev() int64
	// CompactRev is the revision of the last compaction.
	CompactRev() int64
	// Events calls fn for each committed revision in [from, to] that has
	// changes, in order, until fn returns false. It fails with
	// mvcc.ErrCompacted if from is below the compacted revision.
	Events(from, to int64, fn func(rev int64, events []*mvccpb.Event) bool) error
}

// Options tune a Hub. Zero values take the defaults.
type Options struct {
	// Clock drives retries after a failed history read.
	Clock  clockwork.Clock
	Logger *slog.Logger
	// QueueLen is how many responses a stream queues before its watchers
	// fall back to history (etcd: 128).
	QueueLen int
	// ChunkRevs and ChunkEvents bound one catch-up read: at most ChunkRevs
	// revisions, and no further revision once ChunkEvents events are read
	// (a single revision is never split).
	ChunkRevs   int
	ChunkEvents int
	// SyncBatch is how many unsynced watchers one catch-up round serves
	// (etcd: 512).
	SyncBatch int
	// RetryInterval is how long the catch-up loop waits after a failed
	// history read (etcd resyncs every 100ms).
	RetryInterval time.Duration
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.QueueLen <= 0 {
		o.QueueLen = 128
	}
	if o.ChunkRevs <= 0 {
		o.ChunkRevs = 1000
	}
	if o.ChunkEvents <= 0 {
		o.ChunkEvents = 10000
	}
	if o.SyncBatch <= 0 {
		o.SyncBatch = 512
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 100 * time.Millisecond
	}
	return o
}

// Hub fans committed changes out to watchers. Register it with
// Store.SetNotifier before the first write; all methods are safe for
// concurrent use.
type Hub struct {
	src  History
	opts Options
	lg   *slog.Logger

	mu       sync.Mutex
	rev      int64 // last revision notified
	closed   bool
	synced   *group
	unsynced watcherSet
	streams  map[*Stream]struct{}

	kickc chan struct{}
	stopc chan struct{}
	donec chan struct{}

	// afterSync, if set, runs after every catch-up round (tests).
	afterSync func()
}

// New starts a hub over src, at src's current revision.
func New(src History, opts Options) *Hub { return newHub(src, opts, nil) }

func newHub(src History, opts Options, afterSync func()) *Hub {
	opts = opts.withDefaults()
	h := &Hub{
		src:      src,
		opts:     opts,
		lg:       opts.Logger,
		rev:      src.Rev(),
		synced:   newGroup(),
		unsynced: make(watcherSet),
		streams:  make(map[*Stream]struct{}),
		kickc:    make(chan struct{}, 1),
		stopc:    make(chan struct{}),
		donec:    make(chan struct{}),

		afterSync: afterSync,
	}
	go h.run()
	return h
}

// Rev is the last revision the hub has been notified of: synced watchers
// have been given every event up to it.
func (h *Hub) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// NewStream creates an empty stream. After Close it returns a closed one.
func (h *Hub) NewStream() *Stream {
	s := &Stream{
		hub:      h,
		watchers: make(map[WatchID]*watcher),
		ready:    make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.closed = true
		close(s.done)
		return s
	}
	h.streams[s] = struct{}{}
	return s
}

// Close stops the catch-up loop and closes every stream. Notify does
// nothing afterwards.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		<-h.donec
		return
	}
	h.closed = true
	for s := range h.streams {
		s.closeLocked()
	}
	h.streams = nil
	h.mu.Unlock()
	close(h.stopc)
	<-h.donec
}

// Notify implements mvcc.Notifier. It hands the events of rev to the synced
// watchers that want them without waiting: a watcher whose stream queue is
// full becomes unsynced and is caught up from history later.
func (h *Hub) Notify(rev int64, events []*mvccpb.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || rev <= h.rev {
		return
	}
	h.rev = rev
	if h.synced.size() == 0 {
		return
	}
	var got map[*watcher][]*mvccpb.Event
	for _, ev := range events {
		h.synced.each(ev.Kv.Key, func(w *watcher) {
			if rev < w.minRev || w.filtered(ev) {
				return
			}
			if got == nil {
				got = make(map[*watcher][]*mvccpb.Event)
			}
			got[w] = append(got[w], ev)
		})
	}
	for w, evs := range got {
		if w.stream.push(Response{WatchID: w.id, Events: evs, Revision: rev, w: w}) {
			w.minRev = rev + 1
			continue
		}
		// The stream's Take kicks the catch-up loop once it has room.
		h.synced.remove(w)
		w.state = stateUnsynced
		w.minRev = rev
		h.unsynced[w] = struct{}{}
	}
}

// detach takes w out of the hub's sets. Called with h.mu held.
func (h *Hub) detach(w *watcher) {
	h.synced.remove(w)
	delete(h.unsynced, w)
	w.state = stateCanceled
}

// progressible is etcd's condition for a progress notification: the
// watcher is synced and the store has reached its start revision.
func (h *Hub) progressible(w *watcher) bool {
	return w.state == stateSynced && h.rev >= w.startRev
}

func (h *Hub) kick() {
	select {
	case h.kickc <- struct{}{}:
	default:
	}
}

// run is the catch-up loop: it wakes up when a watcher falls behind, a
// stream makes room, or a retry is due, and works until nothing is left
// that it can do.
func (h *Hub) run() {
	defer close(h.donec)
	var retry <-chan time.Time
	for {
		select {
		case <-h.stopc:
			return
		case <-h.kickc:
		case <-retry:
		}
		retry = nil
		for {
			more, err := h.syncOnce()
			if h.afterSync != nil {
				h.afterSync()
			}
			if err != nil {
				h.lg.Warn("watch catch-up failed; retrying", "err", err, "retry_in", h.opts.RetryInterval)
				retry = h.opts.Clock.After(h.opts.RetryInterval)
				break
			}
			if !more {
				break
			}
			select {
			case <-h.stopc:
				return
			default:
			}
		}
	}
}

type revEvents struct {
	rev    int64
	events []*mvccpb.Event
}

// syncOnce runs one catch-up round: it sends compaction notices, reads one
// chunk of history for the unsynced watchers whose streams have room, hands
// it out and moves the watchers that reached the hub's revision to the
// synced set. It reports whether another round could do more right away.
//
// History is read without h.mu so that Notify, and so the writers, never
// wait for the disk here. That is safe because only this loop changes an
// unsynced watcher, and Notify does not touch it: the revisions notified
// meanwhile are simply read by a later round.
func (h *Hub) syncOnce() (more bool, err error) {
	compactRev := h.src.CompactRev()

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return false, nil
	}
	target := h.rev
	from := int64(math.MaxInt64)
	var cands []*watcher
	for w := range h.unsynced {
		if len(cands) >= h.opts.SyncBatch {
			more = true
			break
		}
		if !w.stream.hasRoom() {
			continue
		}
		switch {
		case w.minRev < compactRev:
			if w.stream.push(Response{WatchID: w.id, CompactRevision: compactRev, w: w}) {
				delete(h.unsynced, w)
				w.state = stateCompacted
			}
		case w.minRev > target:
			// It starts after every notified revision: Notify takes it
			// from here.
			h.toSynced(w)
		default:
			cands = append(cands, w)
			from = min(from, w.minRev)
		}
	}
	h.mu.Unlock()
	if len(cands) == 0 {
		return more, nil
	}

	var chunk []revEvents
	nev, end := 0, target
	err = h.src.Events(from, target, func(rev int64, evs []*mvccpb.Event) bool {
		if len(chunk) >= h.opts.ChunkRevs || (len(chunk) > 0 && nev >= h.opts.ChunkEvents) {
			end = chunk[len(chunk)-1].rev
			return false
		}
		chunk = append(chunk, revEvents{rev, evs})
		nev += len(evs)
		return true
	})
	if errors.Is(err, mvcc.ErrCompacted) {
		// Compacted since CompactRev was read: the next round sends the
		// notices.
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("watch: read history from %d to %d: %w", from, target, err)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false, nil
	}
	g := newGroup()
	for _, w := range cands {
		// Canceled meanwhile, or not covered by a chunk cut short.
		if w.state == stateUnsynced && w.minRev <= end {
			g.add(w)
		}
	}
	got := make(map[*watcher][]*mvccpb.Event)
	for _, re := range chunk {
		for _, ev := range re.events {
			g.each(ev.Kv.Key, func(w *watcher) {
				if re.rev >= w.minRev && !w.filtered(ev) {
					got[w] = append(got[w], ev)
				}
			})
		}
	}
	for w := range g.all {
		if evs := got[w]; len(evs) > 0 {
			if !w.stream.push(Response{WatchID: w.id, Events: evs, Revision: end, w: w}) {
				continue // retried once the consumer makes room
			}
		}
		w.minRev = end + 1
		more = true
		if w.minRev > h.rev {
			h.toSynced(w)
		}
	}
	return more && len(h.unsynced) > 0, nil
}

// toSynced moves an unsynced watcher to the synced set. Called with h.mu
// held, which is what makes the move atomic with respect to Notify.
func (h *Hub) toSynced(w *watcher) {
	delete(h.unsynced, w)
	w.state = stateSynced
	h.synced.add(w)
}
