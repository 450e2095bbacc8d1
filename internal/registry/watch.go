package registry

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	// listPageSize bounds the keys of one Range of a list.
	listPageSize = 1000
	// watchBuffer is how many changes a Watch consumer may fall behind by
	// before its channel is closed.
	watchBuffer = 1024
	// firstPoke is how long WaitRevision waits for the watch before it
	// asks the store for a progress notification; later requests back off
	// to maxPoke. These are network timings, so they use real time.
	firstPoke = 20 * time.Millisecond
	maxPoke   = time.Second
	// relistBackoff and maxRelistBackoff space out failed relists.
	relistBackoff    = 100 * time.Millisecond
	maxRelistBackoff = 5 * time.Second
)

// list reads every key under the prefix at one revision, page by page.
func (r *Registry) list(ctx context.Context) (*cache, error) {
	end := clientv3.GetPrefixRangeEnd(r.prefix)
	from := r.prefix
	var c *cache
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPageSize)}
		if c != nil {
			opts = append(opts, clientv3.WithRev(c.rev))
		}
		resp, err := r.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, fmt.Errorf("registry: listing %s: %w", r.prefix, err)
		}
		if c == nil {
			c = newCache(resp.Header.Revision)
		}
		for _, kv := range resp.Kvs {
			kind, key, ok := parseKey(r.prefix, string(kv.Key))
			if !ok {
				continue
			}
			obj, err := decode(kind, kv.Value, kv.ModRevision)
			if err != nil {
				r.log.Warn("registry: skipping undecodable value", "key", string(kv.Key), "err", err)
				continue
			}
			c.store(kind, key, obj, kv.ModRevision)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return c, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// run keeps the cache current: it watches from rev and, whenever the watch
// fails (for example because the revision it must resume from was
// compacted), lists again and watches from the new list.
func (r *Registry) run(rev int64) {
	defer r.loops.Done()
	for {
		r.watch(rev)
		if r.ctx.Err() != nil {
			return
		}
		c := r.relist()
		if c == nil {
			return
		}
		rev = c.rev
	}
}

// watch applies the store's changes after rev until the watch fails or the
// registry closes.
func (r *Registry) watch(rev int64) {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	wch := r.watcher.Watch(ctx, r.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	for {
		select {
		case <-r.ctx.Done():
			return
		case resp, ok := <-wch:
			if !ok {
				return
			}
			if err := resp.Err(); err != nil {
				if r.ctx.Err() == nil {
					r.log.Warn("registry: watch failed; listing again", "prefix", r.prefix, "err", err)
				}
				return
			}
			r.apply(resp)
		}
	}
}

// relist lists until it succeeds (or the registry closes) and replaces the
// cache with the list; it returns nil when the registry closed.
func (r *Registry) relist() *cache {
	backoff := relistBackoff
	for {
		c, err := r.list(r.ctx)
		if err == nil {
			r.replace(c)
			return c
		}
		r.log.Warn("registry: list failed", "prefix", r.prefix, "err", err, "retry", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, maxRelistBackoff)
	}
}

// replace swaps the cache for a fresh list. Live watchers get the
// difference as changes at the list's revision; the history restarts there,
// since the changes in between are unknown.
func (r *Registry) replace(next *cache) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changes := r.cache.diff(next)
	r.cache = next
	for _, h := range r.histories {
		h.reset(next.rev)
	}
	for _, c := range changes {
		r.fanOut(c)
	}
	for s := range r.subs {
		s.notify()
	}
	close(r.advanced)
	r.advanced = make(chan struct{})
}

// apply applies one watch response to the cache.
func (r *Registry) apply(resp clientv3.WatchResponse) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rev := r.cache.rev
	var touched map[Kind]bool
	for _, ev := range resp.Events {
		rev = max(rev, ev.Kv.ModRevision)
		kind, key, ok := parseKey(r.prefix, string(ev.Kv.Key))
		if !ok {
			continue
		}
		c, ok := r.change(kind, key, ev)
		if !ok {
			continue
		}
		r.histories[kind].add(c)
		r.fanOut(c)
		if touched == nil {
			touched = map[Kind]bool{}
		}
		touched[kind] = true
	}
	if resp.IsProgressNotify() {
		rev = max(rev, resp.Header.Revision)
	}
	for s := range r.subs {
		if s.wants(touched) {
			s.notify()
		}
	}
	r.advanceLocked(rev)
}

// change applies one store event to the cache and returns the change it
// made; ok is false when the cache did not change.
func (r *Registry) change(kind Kind, key string, ev *clientv3.Event) (Change, bool) {
	rev := ev.Kv.ModRevision
	if ev.Type == mvccpb.PUT {
		obj, err := decode(kind, ev.Kv.Value, rev)
		if err == nil {
			return r.cache.put(kind, key, obj, rev), true
		}
		// An object that cannot be read is as good as gone.
		r.log.Warn("registry: undecodable value; treating it as deleted", "key", string(ev.Kv.Key), "err", err)
	}
	var prevKV any
	if ev.PrevKv != nil && r.cache.lookup(kind, key) == nil {
		prevKV, _ = decode(kind, ev.PrevKv.Value, ev.PrevKv.ModRevision)
	}
	return r.cache.delete(kind, key, prevKV, rev)
}

// advanceLocked moves the cache revision forward and wakes WaitRevision.
func (r *Registry) advanceLocked(rev int64) {
	if rev <= r.cache.rev {
		return
	}
	r.cache.rev = rev
	close(r.advanced)
	r.advanced = make(chan struct{})
}

// requestProgress asks the store for a progress notification whenever
// WaitRevision pokes, so that the cache revision moves past writes outside
// the prefix too.
func (r *Registry) requestProgress() {
	defer r.loops.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.pokes:
			if err := r.watcher.RequestProgress(r.ctx); err != nil && r.ctx.Err() == nil {
				r.log.Debug("registry: progress request failed", "err", err)
			}
		}
	}
}

func (r *Registry) poke() {
	select {
	case r.pokes <- struct{}{}:
	default:
	}
}

// WaitRevision returns once the cache has caught up with rev.
func (r *Registry) WaitRevision(ctx context.Context, rev int64) error {
	var timer *time.Timer
	delay := firstPoke
	for {
		r.mu.Lock()
		cur, closed, advanced := r.cache.rev, r.closed, r.advanced
		r.mu.Unlock()
		if cur >= rev {
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		if closed {
			return ErrClosed
		}
		if timer == nil {
			timer = time.NewTimer(delay)
			defer timer.Stop()
		}
		select {
		case <-advanced:
		case <-r.stopped:
		case <-ctx.Done():
			return fmt.Errorf("registry: waiting for revision %d (cache at %d): %w", rev, cur, ctx.Err())
		case <-timer.C:
			r.poke()
			delay = min(2*delay, maxPoke)
			timer.Reset(delay)
		}
	}
}

// watcher is one consumer of Watch.
type watcher struct {
	kind Kind
	from int64
	ch   chan Change
	// gone is closed when the watcher is dropped.
	gone chan struct{}
}

// Watch sends the changes of kind after revision from, in revision order,
// until ctx ends; then the channel is closed. from = 0 means "from now". If
// from is older than the cache's history it returns ErrTooOld. A watcher too
// slow to keep up has its channel closed early and must resume.
func (r *Registry) Watch(ctx context.Context, kind Kind, from int64) (<-chan Change, error) {
	if !kind.known() {
		return nil, fmt.Errorf("registry: unknown kind %q", kind)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if from == 0 {
		from = r.cache.rev
	}
	h := r.histories[kind]
	if from < h.floor {
		return nil, fmt.Errorf("%w: %d, the oldest change of %s held is after %d", ErrTooOld, from, kind, h.floor)
	}
	replay := h.since(from)
	w := &watcher{kind: kind, from: from, ch: make(chan Change, len(replay)+watchBuffer), gone: make(chan struct{})}
	for _, c := range replay {
		w.ch <- c
	}
	r.watchers[w] = struct{}{}
	go func() {
		select {
		case <-ctx.Done():
			r.mu.Lock()
			r.dropWatcher(w)
			r.mu.Unlock()
		case <-w.gone:
		}
	}()
	return w.ch, nil
}

// fanOut sends a change to the watchers of its kind; a watcher whose
// buffer is full is dropped.
func (r *Registry) fanOut(c Change) {
	for w := range r.watchers {
		if w.kind != c.Kind || c.Revision <= w.from {
			continue
		}
		select {
		case w.ch <- c:
		default:
			r.log.Warn("registry: watcher too slow; closing its channel", "kind", w.kind)
			r.dropWatcher(w)
		}
	}
}

func (r *Registry) dropWatcher(w *watcher) {
	if _, ok := r.watchers[w]; !ok {
		return
	}
	delete(r.watchers, w)
	close(w.ch)
	close(w.gone)
}

// subscriber is one consumer of Subscribe.
type subscriber struct {
	kinds map[Kind]bool // nil: every kind
	ch    chan struct{}
}

func (s *subscriber) wants(touched map[Kind]bool) bool {
	for k := range touched {
		if s.kinds == nil || s.kinds[k] {
			return true
		}
	}
	return false
}

func (s *subscriber) notify() {
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

// Subscribe returns a channel that receives a value (coalesced, buffer of
// one) whenever an object of one of kinds changes, and a function that ends
// the subscription. Without kinds, every change counts. The channel is
// never closed.
func (r *Registry) Subscribe(kinds ...Kind) (<-chan struct{}, func()) {
	s := &subscriber{ch: make(chan struct{}, 1)}
	if len(kinds) > 0 {
		s.kinds = map[Kind]bool{}
		for _, k := range kinds {
			s.kinds[k] = true
		}
	}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	return s.ch, func() {
		r.mu.Lock()
		delete(r.subs, s)
		r.mu.Unlock()
	}
}
