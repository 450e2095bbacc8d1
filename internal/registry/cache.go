package registry

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/herd-project/herd/api"
)

// table is one kind's cache map. Snapshot hands out the map itself and
// marks it shared; the next write copies it first, so a Snapshot costs
// nothing and the copying is paid at most once per snapshot and kind.
type table[T any] struct {
	m      map[string]T
	shared bool
}

func newTable[T any]() table[T] { return table[T]{m: map[string]T{}} }

func (t *table[T]) get(key string) (T, bool) {
	v, ok := t.m[key]
	return v, ok
}

func (t *table[T]) writable() map[string]T {
	if t.shared {
		t.m = maps.Clone(t.m)
		t.shared = false
	}
	return t.m
}

func (t *table[T]) set(key string, v T) { t.writable()[key] = v }

func (t *table[T]) remove(key string) {
	if _, ok := t.m[key]; ok {
		delete(t.writable(), key)
	}
}

func (t *table[T]) share() map[string]T {
	t.shared = true
	return t.m
}

// cache holds every object under the prefix as of revision rev. Objects are
// immutable once cached: a change replaces the pointer.
type cache struct {
	rev        int64
	jobs       table[*api.Job]
	allocs     table[*api.Allocation]
	nodes      table[*api.Node]
	namespaces table[*api.Namespace]
	heartbeats table[Heartbeat]
	events     table[storedEvent]
}

// storedEvent is a cached event with the revision that stored it, which
// orders events of the same nanosecond.
type storedEvent struct {
	ev  *api.Event
	rev int64
}

func newCache(rev int64) *cache {
	return &cache{
		rev:        rev,
		jobs:       newTable[*api.Job](),
		allocs:     newTable[*api.Allocation](),
		nodes:      newTable[*api.Node](),
		namespaces: newTable[*api.Namespace](),
		heartbeats: newTable[Heartbeat](),
		events:     newTable[storedEvent](),
	}
}

// lookup returns the cached object of kind under key, as a Change carries
// it (a pointer), or nil.
func (c *cache) lookup(kind Kind, key string) any {
	switch kind {
	case Jobs:
		if o, ok := c.jobs.get(key); ok {
			return o
		}
	case Allocs:
		if o, ok := c.allocs.get(key); ok {
			return o
		}
	case Nodes:
		if o, ok := c.nodes.get(key); ok {
			return o
		}
	case Namespaces:
		if o, ok := c.namespaces.get(key); ok {
			return o
		}
	case Heartbeats:
		if o, ok := c.heartbeats.get(key); ok {
			return &o
		}
	case Events:
		if o, ok := c.events.get(key); ok {
			return o.ev
		}
	}
	return nil
}

// store caches obj, as returned by decode for kind, under key; rev is its
// mod_revision.
func (c *cache) store(kind Kind, key string, obj any, rev int64) {
	switch o := obj.(type) {
	case *api.Job:
		c.jobs.set(key, o)
	case *api.Allocation:
		c.allocs.set(key, o)
	case *api.Node:
		c.nodes.set(key, o)
	case *api.Namespace:
		c.namespaces.set(key, o)
	case *Heartbeat:
		c.heartbeats.set(key, *o)
	case *api.Event:
		c.events.set(key, storedEvent{ev: o, rev: rev})
	}
}

func (c *cache) remove(kind Kind, key string) {
	switch kind {
	case Jobs:
		c.jobs.remove(key)
	case Allocs:
		c.allocs.remove(key)
	case Nodes:
		c.nodes.remove(key)
	case Namespaces:
		c.namespaces.remove(key)
	case Heartbeats:
		c.heartbeats.remove(key)
	case Events:
		c.events.remove(key)
	}
}

// keys lists the cache keys of kind.
func (c *cache) keys(kind Kind) []string {
	switch kind {
	case Jobs:
		return slices.Collect(maps.Keys(c.jobs.m))
	case Allocs:
		return slices.Collect(maps.Keys(c.allocs.m))
	case Nodes:
		return slices.Collect(maps.Keys(c.nodes.m))
	case Namespaces:
		return slices.Collect(maps.Keys(c.namespaces.m))
	case Heartbeats:
		return slices.Collect(maps.Keys(c.heartbeats.m))
	case Events:
		return slices.Collect(maps.Keys(c.events.m))
	}
	return nil
}

// put caches obj under key and returns the change it makes.
func (c *cache) put(kind Kind, key string, obj any, rev int64) Change {
	prev := c.lookup(kind, key)
	c.store(kind, key, obj, rev)
	ch := Change{Kind: kind, Type: api.Modified, Revision: rev, Object: obj, Prev: prev}
	if prev == nil {
		ch.Type = api.Added
	}
	return ch
}

// delete removes key and returns the change it makes, with prevKV (already
// decoded, or nil) standing in for an object the cache did not hold.
func (c *cache) delete(kind Kind, key string, prevKV any, rev int64) (Change, bool) {
	prev := c.lookup(kind, key)
	if prev == nil {
		prev = prevKV
	}
	c.remove(kind, key)
	if prev == nil {
		return Change{}, false
	}
	return Change{Kind: kind, Type: api.Deleted, Revision: rev, Object: prev, Prev: prev}, true
}

// diff returns the changes that turn c into next, all at next's revision:
// what a relist reports after the watch lost track.
func (c *cache) diff(next *cache) []Change {
	var changes []Change
	for _, kind := range allKinds {
		oldKeys, newKeys := c.keys(kind), next.keys(kind)
		slices.Sort(oldKeys)
		slices.Sort(newKeys)
		for _, key := range newKeys {
			obj := next.lookup(kind, key)
			prev := c.lookup(kind, key)
			switch {
			case prev == nil:
				changes = append(changes, Change{Kind: kind, Type: api.Added, Revision: next.rev, Object: obj})
			case modRevision(prev) != modRevision(obj):
				changes = append(changes, Change{Kind: kind, Type: api.Modified, Revision: next.rev, Object: obj, Prev: prev})
			}
		}
		for _, key := range oldKeys {
			if _, kept := slices.BinarySearch(newKeys, key); !kept {
				prev := c.lookup(kind, key)
				changes = append(changes, Change{Kind: kind, Type: api.Deleted, Revision: next.rev, Object: prev, Prev: prev})
			}
		}
	}
	return changes
}

func (c *cache) snapshot() *Snapshot {
	return &Snapshot{
		Revision:   c.rev,
		Namespaces: c.namespaces.share(),
		Jobs:       c.jobs.share(),
		Allocs:     c.allocs.share(),
		Nodes:      c.nodes.share(),
		Heartbeats: c.heartbeats.share(),
	}
}

// sortedEventNames returns the cached events' names oldest first: by the
// time their names start with, then by the revision that stored them.
func (c *cache) sortedEventNames() []string {
	names := slices.Collect(maps.Keys(c.events.m))
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(strings.Compare(eventTime(a), eventTime(b)), cmp.Compare(c.events.m[a].rev, c.events.m[b].rev), strings.Compare(a, b))
	})
	return names
}

// sortedEvents returns the cached events oldest first.
func (c *cache) sortedEvents() []*api.Event {
	names := c.sortedEventNames()
	out := make([]*api.Event, len(names))
	for i, name := range names {
		out[i] = c.events.m[name].ev
	}
	return out
}

// eventTime is the time part of an event's name.
func eventTime(name string) string {
	t, _, _ := strings.Cut(name, "-")
	return t
}

// history is a ring of one kind's latest changes, in revision order, for
// watches that resume from an older revision. Each kind has its own, so
// that frequent heartbeats do not push out allocation changes.
type history struct {
	size  int
	buf   []Change // grows to size, then wraps
	start int      // index of the oldest change once buf is full
	// floor: every change after it is in the ring.
	floor int64
}

func newHistory(size int, floor int64) *history {
	return &history{size: size, floor: floor}
}

func (h *history) add(c Change) {
	switch {
	case h.size <= 0:
		h.floor = max(h.floor, c.Revision)
	case len(h.buf) < h.size:
		h.buf = append(h.buf, c)
	default:
		h.floor = max(h.floor, h.buf[h.start].Revision)
		h.buf[h.start] = c
		h.start = (h.start + 1) % h.size
	}
}

// reset forgets every change: nothing at or before floor can be replayed.
func (h *history) reset(floor int64) {
	h.buf, h.start, h.floor = nil, 0, floor
}

// since returns the changes after revision from, oldest first.
func (h *history) since(from int64) []Change {
	var out []Change
	for i := range len(h.buf) {
		if c := h.buf[(h.start+i)%len(h.buf)]; c.Revision > from {
			out = append(out, c)
		}
	}
	return out
}
