package watch

import (
	"go.etcd.io/etcd/pkg/v3/adt"
)

// watcherSet is a set of watchers.
type watcherSet map[*watcher]struct{}

// group indexes watchers by what they watch, so that the watchers of a key
// are found without scanning them all: single-key watchers by key, ranges in
// an interval tree.
type group struct {
	keys   map[string]watcherSet
	ranges adt.IntervalTree
	all    watcherSet
}

func newGroup() *group {
	return &group{
		keys:   make(map[string]watcherSet),
		ranges: adt.NewIntervalTree(),
		all:    make(watcherSet),
	}
}

func (g *group) size() int { return len(g.all) }

func (g *group) has(w *watcher) bool {
	_, ok := g.all[w]
	return ok
}

// interval is w's range in the tree. An empty end is +infinity for affine
// string intervals, which is what a from-key watcher needs.
func (w *watcher) interval() adt.Interval {
	if w.fromKey {
		return adt.NewStringAffineInterval(string(w.key), "")
	}
	return adt.NewStringAffineInterval(string(w.key), string(w.end))
}

func (g *group) add(w *watcher) {
	if g.has(w) {
		return
	}
	g.all[w] = struct{}{}
	if w.single() {
		set := g.keys[string(w.key)]
		if set == nil {
			set = make(watcherSet)
			g.keys[string(w.key)] = set
		}
		set[w] = struct{}{}
		return
	}
	ivl := w.interval()
	if iv := g.ranges.Find(ivl); iv != nil {
		iv.Val.(watcherSet)[w] = struct{}{}
		return
	}
	g.ranges.Insert(ivl, watcherSet{w: struct{}{}})
}

// remove reports whether w was in the group.
func (g *group) remove(w *watcher) bool {
	if !g.has(w) {
		return false
	}
	delete(g.all, w)
	if w.single() {
		set := g.keys[string(w.key)]
		delete(set, w)
		if len(set) == 0 {
			delete(g.keys, string(w.key))
		}
		return true
	}
	ivl := w.interval()
	if iv := g.ranges.Find(ivl); iv != nil {
		set := iv.Val.(watcherSet)
		delete(set, w)
		if len(set) == 0 {
			g.ranges.Delete(ivl)
		}
	}
	return true
}

// each calls fn once for every watcher in the group whose range holds key.
func (g *group) each(key []byte, fn func(w *watcher)) {
	for w := range g.keys[string(key)] {
		fn(w)
	}
	if g.ranges.Len() == 0 {
		return
	}
	for _, iv := range g.ranges.Stab(adt.NewStringAffinePoint(string(key))) {
		for w := range iv.Val.(watcherSet) {
			fn(w)
		}
	}
}
