package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"sync"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// fakeRegistry is an in-memory Registry: it applies Commits atomically with
// the registry's conditions (an update must name the stored resource
// version) and notifies subscribers of the kinds a commit changed.
type fakeRegistry struct {
	mu      sync.Mutex
	rev     int64
	allocs  map[string]*api.Allocation
	nodes   map[string]*api.Node
	events  []*api.Event
	subs    map[*fakeSub]bool
	commits [][]registry.Op // every Commit attempted, in order
	// beforeCommit, if set, runs at the start of every Commit with its
	// number (0 for the first), outside the lock; an error it returns fails
	// the Commit.
	beforeCommit func(n int, ops []registry.Op) error
}

type fakeSub struct {
	ch    chan struct{}
	kinds []registry.Kind
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{
		allocs: map[string]*api.Allocation{},
		nodes:  map[string]*api.Node{},
		subs:   map[*fakeSub]bool{},
	}
}

func (f *fakeRegistry) Snapshot() *registry.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &registry.Snapshot{
		Revision: f.rev,
		Allocs:   maps.Clone(f.allocs),
		Nodes:    maps.Clone(f.nodes),
	}
}

func (f *fakeRegistry) Subscribe(kinds ...registry.Kind) (<-chan struct{}, func()) {
	s := &fakeSub{ch: make(chan struct{}, 1), kinds: kinds}
	f.mu.Lock()
	f.subs[s] = true
	f.mu.Unlock()
	return s.ch, func() {
		f.mu.Lock()
		delete(f.subs, s)
		f.mu.Unlock()
	}
}

// endSubscriptions closes every subscriber's channel.
func (f *fakeRegistry) endSubscriptions() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		close(s.ch)
		delete(f.subs, s)
	}
}

func (f *fakeRegistry) Commit(ctx context.Context, ops ...registry.Op) (int64, error) {
	f.mu.Lock()
	n := len(f.commits)
	f.commits = append(f.commits, ops)
	hook := f.beforeCommit
	f.mu.Unlock()
	if hook != nil {
		if err := hook(n, ops); err != nil {
			return 0, err
		}
	}
	if len(ops) == 0 || len(ops) > registry.MaxOps {
		return 0, fmt.Errorf("fake registry: %d operations", len(ops))
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	for _, op := range ops {
		if err := f.check(op); err != nil {
			return 0, err
		}
	}
	f.rev++
	changed := map[registry.Kind]bool{}
	for _, op := range ops {
		f.apply(op)
		changed[op.Kind] = true
	}
	f.notify(changed)
	return f.rev, nil
}

// check returns the error the registry returns for op against the store.
func (f *fakeRegistry) check(op registry.Op) error {
	switch {
	case op.Type == registry.OpCreate && op.Kind == registry.Events:
		if _, ok := op.Object.(*api.Event); !ok {
			return fmt.Errorf("fake registry: event op with %T", op.Object)
		}
		return nil
	case op.Type == registry.OpUpdate && op.Kind == registry.Allocs:
		stored, ok := f.allocs[registry.Key(op.Namespace, op.Name)]
		if !ok {
			return fmt.Errorf("allocation %s/%s: %w", op.Namespace, op.Name, registry.ErrNotFound)
		}
		if _, ok := op.Object.(*api.Allocation); !ok {
			return fmt.Errorf("fake registry: allocation op with %T", op.Object)
		}
		if stored.ResourceVersion != op.ResourceVersion {
			return fmt.Errorf("allocation %s/%s: %w", op.Namespace, op.Name, registry.ErrConflict)
		}
		return nil
	}
	return fmt.Errorf("fake registry: unexpected %s of %s", op.Type, op.Kind)
}

func (f *fakeRegistry) apply(op registry.Op) {
	rv := strconv.FormatInt(f.rev, 10)
	switch obj := op.Object.(type) {
	case *api.Event:
		f.events = append(f.events, deepCopy(obj))
	case *api.Allocation:
		obj.ResourceVersion = rv
		f.allocs[registry.Key(op.Namespace, op.Name)] = deepCopy(obj)
	}
}

func (f *fakeRegistry) notify(changed map[registry.Kind]bool) {
	for s := range f.subs {
		for _, k := range s.kinds {
			if changed[k] {
				select {
				case s.ch <- struct{}{}:
				default:
				}
				break
			}
		}
	}
}

// put stores objects as another writer would, bumping their resource
// version, and notifies subscribers.
func (f *fakeRegistry) put(objs ...api.Object) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	rv := strconv.FormatInt(f.rev, 10)
	changed := map[registry.Kind]bool{}
	for _, o := range objs {
		switch o := o.(type) {
		case *api.Allocation:
			c := deepCopy(o)
			c.ResourceVersion = rv
			f.allocs[registry.Key(c.Namespace, c.Name)] = c
			changed[registry.Allocs] = true
		case *api.Node:
			c := deepCopy(o)
			c.ResourceVersion = rv
			f.nodes[c.Name] = c
			changed[registry.Nodes] = true
		default:
			panic(fmt.Sprintf("fake registry: put of %T", o))
		}
	}
	f.notify(changed)
}

func (f *fakeRegistry) alloc(job string, index int) *api.Allocation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.allocs[registry.Key(api.DefaultNamespace, api.AllocName(job, "g", index))]
}

func (f *fakeRegistry) commitLog() [][]registry.Op {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]registry.Op(nil), f.commits...)
}

func (f *fakeRegistry) recordedEvents() []*api.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*api.Event(nil), f.events...)
}

func deepCopy[T any](v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var c T
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return &c
}
