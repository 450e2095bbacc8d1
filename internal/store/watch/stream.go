package watch

import (
	"bytes"
	"errors"
	"slices"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// WatchID identifies a watcher within its stream.
type WatchID int64

const (
	// AutoWatchID asks Watch to pick the next free ID of the stream.
	AutoWatchID WatchID = 0
	// ProgressWatchID is the ID of a progress response sent on behalf of
	// every watcher of a stream (RequestProgressAll).
	ProgressWatchID WatchID = -1
)

// Errors returned by Stream.
var (
	ErrEmptyRange  = errors.New("watch: watcher range is empty")
	ErrDuplicateID = errors.New("watch: duplicate watch ID on the stream")
	ErrNotFound    = errors.New("watch: watcher does not exist")
	ErrNegativeRev = errors.New("watch: negative start revision")
	ErrClosed      = errors.New("watch: stream closed")
)

// Filter reports whether an event is to be left out.
type Filter func(ev *mvccpb.Event) bool

// Response is what a stream's consumer receives: events of one watcher, a
// compaction notice, or a progress notification (no events).
type Response struct {
	WatchID WatchID
	// Events are in revision order; the events of one revision are never
	// split between responses. They are shared with other watchers and with
	// the engine: do not modify them.
	Events []*mvccpb.Event
	// Revision is how far the watcher has been brought: every event up to
	// it has been delivered. It is 0 for a compaction notice, as in etcd.
	Revision int64
	// CompactRevision, when not 0, means the watcher needed history from
	// before this compaction and gets nothing more; it stays registered
	// until it is canceled.
	CompactRevision int64

	w *watcher // nil for ProgressWatchID responses
}

type state uint8

const (
	stateSynced    state = iota + 1 // in hub.synced, fed by Notify
	stateUnsynced                   // in hub.unsynced, fed from history
	stateCompacted                  // got its compaction notice
	stateCanceled
)

type watcher struct {
	stream   *Stream
	id       WatchID
	key, end []byte // end is nil for a single key and for fromKey
	fromKey  bool
	startRev int64
	// minRev is the next revision the watcher needs. For synced watchers
	// it may lag behind; it is brought up to date when they fall behind.
	minRev  int64
	filters []Filter
	state   state
}

func (w *watcher) single() bool { return !w.fromKey && w.end == nil }

func (w *watcher) contains(key []byte) bool {
	switch {
	case w.single():
		return bytes.Equal(key, w.key)
	case bytes.Compare(key, w.key) < 0:
		return false
	default:
		return w.fromKey || bytes.Compare(key, w.end) < 0
	}
}

func (w *watcher) filtered(ev *mvccpb.Event) bool {
	for _, f := range w.filters {
		if f(ev) {
			return true
		}
	}
	return false
}

// Stream is a set of watchers sharing one response queue, like one etcd
// gRPC Watch stream. The queue is bounded: when it is full the hub stops
// pushing to the stream's watchers and catches them up from history once the
// consumer has taken what is queued.
type Stream struct {
	hub *Hub

	// Guarded by hub.mu.
	nextID   WatchID
	watchers map[WatchID]*watcher
	closed   bool

	qmu     sync.Mutex
	queue   []Response
	starved bool // a push was refused since the last Take
	ready   chan struct{}
	done    chan struct{}
}

// push queues r unless the queue is full. Called with hub.mu held.
func (s *Stream) push(r Response) bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if len(s.queue) >= s.hub.opts.QueueLen {
		s.starved = true
		return false
	}
	s.queue = append(s.queue, r)
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return true
}

// hasRoom reports whether the queue can take a response. When it cannot,
// the next Take kicks the catch-up loop, as after a refused push.
func (s *Stream) hasRoom() bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if len(s.queue) >= s.hub.opts.QueueLen {
		s.starved = true
		return false
	}
	return true
}

// dropQueued removes w's queued responses. Called with hub.mu held.
func (s *Stream) dropQueued(w *watcher) {
	s.qmu.Lock()
	s.queue = slices.DeleteFunc(s.queue, func(r Response) bool { return r.w == w })
	s.qmu.Unlock()
}

// Ready is signalled when responses are queued; call Take then.
func (s *Stream) Ready() <-chan struct{} { return s.ready }

// Done is closed when the stream or the hub is closed.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Take returns every queued response, oldest first, and empties the queue.
func (s *Stream) Take() []Response {
	s.qmu.Lock()
	q := s.queue
	s.queue = nil
	starved := s.starved
	s.starved = false
	s.qmu.Unlock()
	if starved {
		// Watchers fell behind while the queue was full: there is room now.
		s.hub.kick()
	}
	return q
}

// Watch adds a watcher on key (an empty key is "\x00", the smallest) with
// end as on the wire: empty for the single key, "\x00" for every key from
// key on, otherwise the range [key, end). startRev 0 watches from the next
// revision; a past startRev replays history first. id AutoWatchID picks the
// next free ID of the stream; any other id is used as is. Filters drop the
// events they match.
func (s *Stream) Watch(id WatchID, key, end []byte, startRev int64, filters ...Filter) (WatchID, error) {
	if startRev < 0 {
		return 0, ErrNegativeRev
	}
	w := &watcher{
		stream:   s,
		key:      bytes.Clone(key),
		startRev: startRev,
		filters:  filters,
	}
	if len(w.key) == 0 {
		w.key = []byte{0}
	}
	switch {
	case len(end) == 0:
	case len(end) == 1 && end[0] == 0:
		w.fromKey = true
	case bytes.Compare(w.key, end) >= 0:
		return 0, ErrEmptyRange
	default:
		w.end = bytes.Clone(end)
	}

	h := s.hub
	// Read before taking the lock: revisions up to storeRev that are not
	// notified yet are below the new watcher's minRev, so it cannot miss
	// them or get them twice.
	storeRev := h.src.Rev()

	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	if id == AutoWatchID {
		for s.watchers[s.nextID] != nil {
			s.nextID++
		}
		id = s.nextID
		s.nextID++
	} else if s.watchers[id] != nil {
		return 0, ErrDuplicateID
	}
	w.id = id
	s.watchers[id] = w

	cur := max(h.rev, storeRev)
	if startRev == 0 || startRev > cur {
		w.minRev = max(cur+1, startRev)
		w.state = stateSynced
		h.synced.add(w)
		return id, nil
	}
	w.minRev = startRev
	w.state = stateUnsynced
	h.unsynced[w] = struct{}{}
	h.kick()
	return id, nil
}

// Cancel removes a watcher, and its responses still in the queue. It
// succeeds for a watcher that got a compaction notice, as in etcd.
func (s *Stream) Cancel(id WatchID) error {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	w := s.watchers[id]
	if w == nil || s.closed {
		return ErrNotFound
	}
	delete(s.watchers, id)
	h.detach(w)
	s.dropQueued(w)
	return nil
}

// Synced reports whether the watcher has been given every event up to the
// hub's revision.
func (s *Stream) Synced(id WatchID) bool {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	w := s.watchers[id]
	return w != nil && w.state == stateSynced
}

// RequestProgress queues a progress response (no events, Revision = the
// hub's revision) for the watcher if it is synced and its start revision
// has been reached; otherwise, or if the queue is full, it does nothing,
// as in etcd. Going through the queue orders it after the events it covers.
func (s *Stream) RequestProgress(id WatchID) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	w := s.watchers[id]
	if w == nil || !h.progressible(w) {
		return
	}
	s.push(Response{WatchID: id, Revision: h.rev, w: w})
}

// RequestProgressAll queues one progress response with ProgressWatchID if
// every watcher of the stream is synced, and reports whether they were. A
// stream without watchers gets nothing and reports true, as in etcd.
func (s *Stream) RequestProgressAll() bool {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return false
	}
	for _, w := range s.watchers {
		if !h.progressible(w) {
			return false
		}
	}
	if len(s.watchers) > 0 {
		s.push(Response{WatchID: ProgressWatchID, Revision: h.rev})
	}
	return true
}

// Close removes every watcher of the stream and closes Done.
func (s *Stream) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	s.closeLocked()
	delete(h.streams, s)
}

// closeLocked is Close with hub.mu held.
func (s *Stream) closeLocked() {
	if s.closed {
		return
	}
	s.closed = true
	for _, w := range s.watchers {
		s.hub.detach(w)
	}
	s.watchers = nil
	s.qmu.Lock()
	s.queue = nil
	s.qmu.Unlock()
	close(s.done)
}
