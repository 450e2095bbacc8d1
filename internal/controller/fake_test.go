package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// fakeRegistry is an in-memory Registry that applies Ops the way the real
// one does: conditions first (all or none), then puts of JSON copies, with
// the new revision as every written object's resource version.
type fakeRegistry struct {
	clock clockwork.Clock

	mu         sync.Mutex
	rev        int64
	jobs       map[string]*api.Job
	allocs     map[string]*api.Allocation
	nodes      map[string]*api.Node
	heartbeats map[string]registry.Heartbeat
	events     map[string]*api.Event
	subs       map[*fakeSub]bool
	// commits counts Commit calls that reached the store (including failed
	// ones), as store requests.
	commits int
	// failCommit, if set, is asked before each commit; an error fails it.
	failCommit func(ops []registry.Op) error
	eventSeq   int
}

type fakeSub struct {
	kinds map[registry.Kind]bool
	ch    chan struct{}
}

func newFakeRegistry(clock clockwork.Clock) *fakeRegistry {
	return &fakeRegistry{
		clock:      clock,
		jobs:       map[string]*api.Job{},
		allocs:     map[string]*api.Allocation{},
		nodes:      map[string]*api.Node{},
		heartbeats: map[string]registry.Heartbeat{},
		events:     map[string]*api.Event{},
		subs:       map[*fakeSub]bool{},
	}
}

func (f *fakeRegistry) Snapshot() *registry.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &registry.Snapshot{
		Revision:   f.rev,
		Jobs:       map[string]*api.Job{},
		Allocs:     map[string]*api.Allocation{},
		Nodes:      map[string]*api.Node{},
		Heartbeats: map[string]registry.Heartbeat{},
	}
	for k, v := range f.jobs {
		s.Jobs[k] = v
	}
	for k, v := range f.allocs {
		s.Allocs[k] = v
	}
	for k, v := range f.nodes {
		s.Nodes[k] = v
	}
	for k, v := range f.heartbeats {
		s.Heartbeats[k] = v
	}
	return s
}

func (f *fakeRegistry) Subscribe(kinds ...registry.Kind) (<-chan struct{}, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &fakeSub{kinds: map[registry.Kind]bool{}, ch: make(chan struct{}, 1)}
	for _, k := range kinds {
		s.kinds[k] = true
	}
	f.subs[s] = true
	return s.ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, s)
	}
}

func (f *fakeRegistry) EventNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedKeys(f.events)
}

func (f *fakeRegistry) commitCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.commits
}

// opKey returns the kind and key an op writes.
func opKey(op registry.Op) (registry.Kind, string, error) {
	kind, ns, name := op.Kind, op.Namespace, op.Name
	switch o := op.Object.(type) {
	case api.Object:
		kind, ns, name = registry.KindOf(o), o.GetMeta().Namespace, o.GetMeta().Name
	case *registry.Heartbeat:
		kind = registry.Heartbeats
	case *api.Event:
		kind = registry.Events
	}
	if name == "" && kind != registry.Events {
		return "", "", errors.New("op without a name")
	}
	if kind == registry.Jobs || kind == registry.Allocs {
		return kind, registry.Key(ns, name), nil
	}
	return kind, name, nil
}

func (f *fakeRegistry) versionOf(kind registry.Kind, key string) (string, bool) {
	var obj api.Object
	switch kind {
	case registry.Jobs:
		if j := f.jobs[key]; j != nil {
			obj = j
		}
	case registry.Allocs:
		if a := f.allocs[key]; a != nil {
			obj = a
		}
	case registry.Nodes:
		if n := f.nodes[key]; n != nil {
			obj = n
		}
	case registry.Heartbeats:
		hb, ok := f.heartbeats[key]
		return strconv.FormatInt(hb.Revision, 10), ok
	case registry.Events:
		_, ok := f.events[key]
		return "", ok
	}
	if obj == nil {
		return "", false
	}
	return obj.GetMeta().ResourceVersion, true
}

func (f *fakeRegistry) Commit(ctx context.Context, ops ...registry.Op) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(ops) == 0 || len(ops) > registry.MaxOps {
		return 0, fmt.Errorf("fake registry: %d operations in one commit", len(ops))
	}
	f.commits++
	if f.failCommit != nil {
		if err := f.failCommit(ops); err != nil {
			return 0, err
		}
	}
	seen := map[string]bool{}
	for i, op := range ops {
		kind, key, err := opKey(op)
		if err != nil {
			return 0, fmt.Errorf("fake registry: op %d: %w", i, err)
		}
		if kind == registry.Events && op.Type == registry.OpCreate {
			continue
		}
		if seen[string(kind)+"/"+key] {
			return 0, fmt.Errorf("fake registry: %s/%s written twice", kind, key)
		}
		seen[string(kind)+"/"+key] = true
		rv, exists := f.versionOf(kind, key)
		switch {
		case op.Type == registry.OpCreate && exists:
			return 0, fmt.Errorf("%w: %s/%s", registry.ErrAlreadyExists, kind, key)
		case (op.Type == registry.OpUpdate || op.Type == registry.OpDelete && op.ResourceVersion != "") && !exists:
			return 0, fmt.Errorf("%w: %s/%s", registry.ErrNotFound, kind, key)
		case op.Type == registry.OpUpdate && rv != op.ResourceVersion,
			op.Type == registry.OpDelete && op.ResourceVersion != "" && rv != op.ResourceVersion:
			return 0, fmt.Errorf("%w: %s/%s at %s, not %s", registry.ErrConflict, kind, key, rv, op.ResourceVersion)
		}
	}
	f.rev++
	rv := strconv.FormatInt(f.rev, 10)
	changed := map[registry.Kind]bool{}
	for _, op := range ops {
		kind, key, _ := opKey(op)
		changed[kind] = true
		if op.Type == registry.OpDelete {
			switch kind {
			case registry.Jobs:
				delete(f.jobs, key)
			case registry.Allocs:
				delete(f.allocs, key)
			case registry.Nodes:
				delete(f.nodes, key)
			case registry.Heartbeats:
				delete(f.heartbeats, key)
			case registry.Events:
				delete(f.events, key)
			}
			continue
		}
		switch o := op.Object.(type) {
		case api.Object:
			m := o.GetMeta()
			if op.Type == registry.OpCreate {
				if m.UID == "" {
					m.UID = uuid.NewString()
				}
				if m.CreatedAt.IsZero() {
					m.CreatedAt = f.clock.Now()
				}
			}
			m.ResourceVersion = rv
			switch o := o.(type) {
			case *api.Job:
				f.jobs[key] = roundTrip(o)
			case *api.Allocation:
				f.allocs[key] = roundTrip(o)
			case *api.Node:
				f.nodes[key] = roundTrip(o)
			}
		case *registry.Heartbeat:
			o.Revision = f.rev
			f.heartbeats[key] = *o
		case *api.Event:
			f.eventSeq++
			f.events[fmt.Sprintf("%020d-%04x", o.Time.UnixNano(), f.eventSeq)] = roundTrip(o)
		}
	}
	for s := range f.subs {
		for k := range changed {
			if s.kinds[k] {
				select {
				case s.ch <- struct{}{}:
				default:
				}
				break
			}
		}
	}
	return f.rev, nil
}

// roundTrip copies v through JSON, as the store does; the resource version,
// which is not part of the stored JSON, is copied along.
func roundTrip[T any](v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	if o, ok := any(v).(api.Object); ok {
		any(out).(api.Object).GetMeta().ResourceVersion = o.GetMeta().ResourceVersion
	}
	return out
}

// mustCommit commits ops or fails the test.
func (f *fakeRegistry) mustCommit(t testing.TB, ops ...registry.Op) {
	t.Helper()
	if _, err := f.Commit(context.Background(), ops...); err != nil {
		t.Fatalf("commit %v: %v", describeOps(ops), err)
	}
}

// alloc returns the stored allocation of the default namespace.
func (f *fakeRegistry) alloc(name string) *api.Allocation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.allocs[registry.Key(api.DefaultNamespace, name)]
}

// allocNames lists the stored allocations of the default namespace.
func (f *fakeRegistry) allocNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for _, a := range f.allocs {
		names = append(names, a.Name)
	}
	slices.Sort(names)
	return names
}

func (f *fakeRegistry) eventReasons() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, k := range sortedKeys(f.events) {
		out = append(out, f.events[k].Reason)
	}
	return out
}

// eventually waits, up to a deadline, for cond to hold.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
