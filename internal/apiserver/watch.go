package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// watchKinds are the kinds of /v1/watch/{kind}, with the filters each
// takes.
var watchKinds = map[string]struct {
	kind    registry.Kind
	filters []string
}{
	"jobs":   {registry.Jobs, []string{"namespace", "job"}},
	"allocs": {registry.Allocs, []string{"namespace", "job", "node"}},
	"nodes":  {registry.Nodes, []string{"node"}},
	"events": {registry.Events, []string{"namespace"}},
}

// watchFilter selects the objects of a watch stream; empty fields match
// everything. For jobs, job is the job's name; for nodes, node is the
// node's name.
type watchFilter struct{ namespace, job, node string }

func (f watchFilter) matches(obj any) bool {
	switch o := obj.(type) {
	case *api.Job:
		return (f.namespace == "" || o.Namespace == f.namespace) && (f.job == "" || o.Name == f.job)
	case *api.Allocation:
		return (f.namespace == "" || o.Namespace == f.namespace) && (f.job == "" || o.Spec.Job == f.job) &&
			(f.node == "" || o.Spec.Node == f.node)
	case *api.Node:
		return f.node == "" || o.Name == f.node
	case *api.Event:
		return f.namespace == "" || o.Namespace == f.namespace
	}
	return false
}

// translate turns a change into what a filtered stream sends, if anything.
// An object that stops matching the filter is DELETED for the stream (with
// its last matching state, as in Kubernetes), one that starts matching is
// ADDED.
func translate(f watchFilter, c registry.Change) (typ string, obj any, ok bool) {
	rv := formatRev(c.Revision)
	switch c.Type {
	case api.Added:
		if f.matches(c.Object) {
			return api.Added, c.Object, true
		}
	case api.Modified:
		was := c.Prev != nil && f.matches(c.Prev)
		is := f.matches(c.Object)
		switch {
		case was && is:
			return api.Modified, c.Object, true
		case is:
			return api.Added, c.Object, true
		case was:
			return api.Deleted, withVersion(c.Prev, rv), true
		}
	case api.Deleted:
		if f.matches(c.Object) {
			return api.Deleted, withVersion(c.Object, rv), true
		}
	}
	return "", nil, false
}

// withVersion returns a copy of a deleted object carrying the revision of
// its deletion.
func withVersion(obj any, rv string) any {
	switch o := obj.(type) {
	case *api.Job:
		c := *o
		c.ResourceVersion = rv
		return &c
	case *api.Allocation:
		c := *o
		c.ResourceVersion = rv
		return &c
	case *api.Node:
		c := *o
		c.ResourceVersion = rv
		return &c
	case *api.Namespace:
		c := *o
		c.ResourceVersion = rv
		return &c
	}
	return obj
}

// current lists the objects of kind in the snapshot, in list order.
func current(snap *registry.Snapshot, kind registry.Kind) []any {
	var out []any
	switch kind {
	case registry.Jobs:
		jobs := slices.Collect(maps.Values(snap.Jobs))
		slices.SortFunc(jobs, func(a, b *api.Job) int {
			return strings.Compare(registry.Key(a.Namespace, a.Name), registry.Key(b.Namespace, b.Name))
		})
		for _, j := range jobs {
			out = append(out, j)
		}
	case registry.Allocs:
		allocs := slices.Collect(maps.Values(snap.Allocs))
		slices.SortFunc(allocs, compareAllocs)
		for _, a := range allocs {
			out = append(out, a)
		}
	case registry.Nodes:
		nodes := slices.Collect(maps.Values(snap.Nodes))
		slices.SortFunc(nodes, func(a, b *api.Node) int { return strings.Compare(a.Name, b.Name) })
		for _, n := range nodes {
			out = append(out, n)
		}
	}
	return out
}

// watch streams changes as newline-delimited api.WatchEvents. Without a
// resourceVersion it starts with an ADDED event for every current object
// (all at the list's revision) and a BOOKMARK; with one, it sends the
// changes after it, or 410 if the cache no longer holds them.
func (s *Server) watch(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("kind")
	wk, ok := watchKinds[name]
	if !ok {
		return badRequest("cannot watch %q: want jobs, allocs, nodes or events", name)
	}
	q := r.URL.Query()
	f := watchFilter{namespace: q.Get("namespace"), job: q.Get("job"), node: q.Get("node")}
	for param, v := range map[string]string{"namespace": f.namespace, "job": f.job, "node": f.node} {
		if v != "" && !slices.Contains(wk.filters, param) {
			return badRequest("a watch of %s cannot filter by %s (it takes %s)", name, param, strings.Join(wk.filters, ", "))
		}
	}
	var from int64
	if rv := q.Get("resourceVersion"); rv != "" {
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil || n < 0 {
			return badRequest("resourceVersion %q is not a resource version (a non-negative integer)", rv)
		}
		from = n
	}

	ctx := r.Context()
	listed := from == 0
	initial, changes, err := s.startWatch(ctx, wk.kind, from)
	if errors.Is(err, registry.ErrTooOld) {
		return apiErr(http.StatusGone, api.ReasonGone,
			"resourceVersion %d is too old: list again and watch from the list's resourceVersion", from)
	}
	if err != nil {
		return err
	}
	from = initial.revision

	// A watch outlives any write timeout the server has.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	st := &stream{w: w, rc: rc}

	rev := formatRev(from)
	for _, obj := range initial.objects {
		if f.matches(obj) {
			if err := st.send(api.Added, rev, obj, false); err != nil {
				return nil
			}
		}
	}
	if listed {
		// Tells the client it has the whole list.
		if err := st.send(api.Bookmark, rev, nil, true); err != nil {
			return nil
		}
	} else if err := st.flush(); err != nil {
		return nil
	}

	last := from
	forward := func(c registry.Change) error {
		last = max(last, c.Revision)
		if typ, obj, ok := translate(f, c); ok {
			return st.send(typ, formatRev(c.Revision), obj, true)
		}
		return nil
	}
	ticker := s.clock.NewTicker(s.bookmark)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-changes:
			if !ok {
				return nil // the registry dropped a slow stream: the client resumes
			}
			if forward(c) != nil {
				return nil
			}
		case <-ticker.Chan():
			// Every change up to the registry's revision is in changes
			// now; send those before vouching for the revision.
			cur := s.reg.Revision()
			for n := len(changes); n > 0; n-- {
				c, ok := <-changes
				if !ok {
					return nil
				}
				if forward(c) != nil {
					return nil
				}
			}
			if st.send(api.Bookmark, formatRev(max(cur, last)), nil, true) != nil {
				return nil
			}
		}
	}
}

// listing is the start of a watch without a resource version: the objects
// at a revision.
type listing struct {
	objects  []any
	revision int64
}

// startWatch starts a registry watch of kind after from or, when from is
// 0, after a listing of the current objects, which it returns too (an
// empty one at from otherwise).
func (s *Server) startWatch(ctx context.Context, kind registry.Kind, from int64) (*listing, <-chan registry.Change, error) {
	if from != 0 {
		ch, err := s.reg.Watch(ctx, kind, from)
		return &listing{revision: from}, ch, err
	}
	for attempt := 0; ; attempt++ {
		l := &listing{}
		if kind == registry.Events {
			var events []*api.Event
			events, l.revision = s.reg.EventList()
			for _, ev := range events {
				l.objects = append(l.objects, ev)
			}
		} else {
			snap := s.reg.Snapshot()
			l.revision, l.objects = snap.Revision, current(snap, kind)
		}
		ch, err := s.reg.Watch(ctx, kind, l.revision)
		// A relist of the registry between the listing and the watch
		// makes the listing too old: list again.
		if errors.Is(err, registry.ErrTooOld) && attempt < 3 {
			continue
		}
		return l, ch, err
	}
}

// stream writes watch events.
type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (st *stream) send(typ, rv string, obj any, flush bool) error {
	ev := api.WatchEvent{Type: typ, ResourceVersion: rv}
	if obj != nil {
		b, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("encoding %T: %w", obj, err)
		}
		ev.Object = b
	}
	line, err := json.Marshal(&ev)
	if err != nil {
		return err
	}
	if _, err := st.w.Write(append(line, '\n')); err != nil {
		return err
	}
	if flush {
		return st.flush()
	}
	return nil
}

func (st *stream) flush() error { return st.rc.Flush() }
