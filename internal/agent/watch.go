package agent

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/herd-project/herd/api"
)

// desiredView is the agent's copy of the allocations the server assigns to
// its node, fed by a list and then a watch.
type desiredView struct {
	mu      sync.Mutex
	synced  bool
	allocs  map[string]*api.Allocation // by namespace/name
	changed chan struct{}
}

func newDesiredView() *desiredView {
	return &desiredView{allocs: map[string]*api.Allocation{}, changed: make(chan struct{}, 1)}
}

func allocKey(a *api.Allocation) string { return a.Namespace + "/" + a.Name }

// replace sets the view to a fresh list.
func (v *desiredView) replace(items []api.Allocation) {
	v.mu.Lock()
	v.allocs = make(map[string]*api.Allocation, len(items))
	for i := range items {
		a := items[i]
		v.allocs[allocKey(&a)] = &a
	}
	v.synced = true
	v.mu.Unlock()
	v.notify()
}

// apply applies one watch event; DELETED means the allocation is no longer
// this node's (deleted, replaced, or moved).
func (v *desiredView) apply(typ string, a *api.Allocation) {
	v.mu.Lock()
	if typ == api.Deleted {
		delete(v.allocs, allocKey(a))
	} else {
		v.allocs[allocKey(a)] = a
	}
	v.mu.Unlock()
	v.notify()
}

func (v *desiredView) notify() {
	select {
	case v.changed <- struct{}{}:
	default:
	}
}

// snapshot returns the allocations and whether a list was applied yet. The
// allocations are shared: callers must not modify them.
func (v *desiredView) snapshot() ([]*api.Allocation, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]*api.Allocation, 0, len(v.allocs))
	for _, a := range v.allocs {
		out = append(out, a)
	}
	return out, v.synced
}

// list lists the node's allocations and replaces the view, retrying with
// backoff until it succeeds or ctx ends. It returns the list's version.
func (a *Agent) list(ctx context.Context) (string, error) {
	bo := backoff{min: 250 * time.Millisecond, max: 5 * time.Second}
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		l, err := a.srv.ListAllocs(rctx, api.AllocFilter{Node: a.cfg.Name})
		cancel()
		if err == nil {
			a.view.replace(l.Items)
			return l.ResourceVersion, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		wait := bo.next()
		a.log.Warn("listing the node's allocations failed; will retry", "retryIn", wait, "err", err)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-a.clock.After(wait):
		}
	}
}

// watchLoop keeps the view current from resourceVersion on. A broken stream
// resumes from the last version seen (bookmarks included); a version the
// server no longer has (410) lists again.
func (a *Agent) watchLoop(ctx context.Context, resourceVersion string) {
	bo := backoff{min: 250 * time.Millisecond, max: 5 * time.Second}
	rv := resourceVersion
	for ctx.Err() == nil {
		if rv == "" {
			var err error
			if rv, err = a.list(ctx); err != nil {
				return
			}
		}
		stream, err := a.srv.WatchAllocs(ctx, a.cfg.Name, rv)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if api.IsGone(err) {
				a.log.Info("allocation watch is too far behind; listing again", "resourceVersion", rv)
				rv = ""
				continue
			}
			wait := bo.next()
			a.log.Warn("watching allocations failed; will retry", "retryIn", wait, "err", err)
			if !a.sleep(ctx, wait) {
				return
			}
			continue
		}
		var progressed bool
		rv, progressed, err = a.consume(stream, rv)
		stream.Close()
		if ctx.Err() != nil {
			return
		}
		switch {
		case api.IsGone(err):
			a.log.Info("allocation watch is too far behind; listing again", "resourceVersion", rv)
			rv = ""
			continue
		case err != nil && !errors.Is(err, io.EOF):
			a.log.Warn("allocation watch broke; resuming", "resourceVersion", rv, "err", err)
		}
		if progressed {
			bo.reset()
			continue
		}
		if !a.sleep(ctx, bo.next()) {
			return
		}
	}
}

// consume applies the events of one stream until it ends. It returns the
// last version seen, whether any event arrived, and why the stream ended.
func (a *Agent) consume(stream EventStream, rv string) (string, bool, error) {
	progressed := false
	for {
		ev, err := stream.Next()
		if err != nil {
			return rv, progressed, err
		}
		progressed = true
		switch ev.Type {
		case api.Bookmark:
		case api.Added, api.Modified, api.Deleted:
			alloc := &api.Allocation{}
			if err := ev.Decode(alloc); err != nil {
				a.log.Error("ignoring an undecodable allocation in the watch stream", "type", ev.Type, "err", err)
				break
			}
			a.view.apply(ev.Type, alloc)
			if ev.ResourceVersion == "" {
				ev.ResourceVersion = alloc.ResourceVersion
			}
		default:
			a.log.Warn("ignoring a watch event of unknown type", "type", ev.Type)
		}
		if ev.ResourceVersion != "" {
			rv = ev.ResourceVersion
		}
	}
}

// sleep waits d on the agent's clock; false if ctx ended first.
func (a *Agent) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-a.clock.After(d):
		return true
	}
}
