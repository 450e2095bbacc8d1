// Package registry is the control plane's typed view of the store: it keeps
// jobs, allocations, nodes, namespaces, heartbeats and events as JSON under
// one key prefix, holds all of them in an in-memory cache fed by a single
// etcd watch, and writes through conditional transactions (compare
// mod_revision, then put), so every write is optimistic-concurrency safe.
//
// It talks to the store only through etcd's clientv3, so it runs the same on
// herd store and on etcd. The API server, scheduler and controllers of one
// process share one Registry.
//
// # Keys
//
// Every value is JSON under Options.Prefix (default "/herd/"):
//
//	<prefix>jobs/<namespace>/<name>        api.Job
//	<prefix>allocs/<namespace>/<name>      api.Allocation
//	<prefix>nodes/<name>                   api.Node
//	<prefix>namespaces/<name>              api.Namespace
//	<prefix>heartbeats/<node>              Heartbeat
//	<prefix>events/<unix nanos, 20 digits>-<4 hex digits>   api.Event
//
// An object's ResourceVersion is its key's mod_revision in decimal; it is
// never part of the stored value. Event keys sort by time; the random
// suffix keeps events of the same nanosecond apart.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/jonboulle/clockwork"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Kind names a kind of stored object and its key prefix.
type Kind string

const (
	Jobs       Kind = "jobs"
	Allocs     Kind = "allocs"
	Nodes      Kind = "nodes"
	Namespaces Kind = "namespaces"
	Heartbeats Kind = "heartbeats"
	Events     Kind = "events"
)

// Errors returned by Commit and Watch. Commit wraps them with the key.
var (
	// ErrConflict: a condition of the transaction failed (the object
	// changed, or already exists, or no longer exists).
	ErrConflict = errors.New("registry: conflict")
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("registry: not found")
	// ErrTooOld: a watch asked for changes older than the cache holds.
	ErrTooOld = errors.New("registry: resource version too old")
	// ErrAlreadyExists: a Create found its key taken. It wraps ErrConflict.
	ErrAlreadyExists = fmt.Errorf("%w: already exists", ErrConflict)
)

// MaxOps bounds the operations of one Commit, below the store's limit on
// transaction size. Callers split larger batches.
const MaxOps = 100

// Key is the cache key of a namespaced object: "namespace/name".
func Key(namespace, name string) string { return namespace + "/" + name }

// Heartbeat is the last heartbeat a node's agent sent.
type Heartbeat struct {
	AgentID string `json:"agentID"`
	// Time is the API server's clock when it received the heartbeat; the
	// node controller uses its own clock to judge staleness, so skew between
	// API servers does not matter.
	Time time.Time `json:"time"`
	// Revision is the store revision of the heartbeat write.
	Revision int64 `json:"-"`
}

// Snapshot is the cache at one revision. The maps and the objects in them
// are shared and must not be modified: copy an object before changing it.
type Snapshot struct {
	Revision   int64
	Namespaces map[string]*api.Namespace  // by name
	Jobs       map[string]*api.Job        // by Key(ns, name)
	Allocs     map[string]*api.Allocation // by Key(ns, name)
	Nodes      map[string]*api.Node       // by name
	Heartbeats map[string]Heartbeat       // by node name
}

// Options configure a Registry.
type Options struct {
	// Prefix of every key; default "/herd/".
	Prefix string
	Logger *slog.Logger
	Clock  clockwork.Clock
	// History is how many changes of each kind the cache keeps for watches
	// that resume from an older resource version; default 10000.
	History int
}

// Defaults of Options.
const (
	DefaultPrefix  = "/herd/"
	DefaultHistory = 10000
)

// Registry is the typed, cached view of the store.
type Registry struct {
	cli *clientv3.Client
	// watcher is the registry's own, so that its progress requests concern
	// its watch only, and so that closing it cannot hold up closing cli.
	watcher clientv3.Watcher
	prefix  string
	log     *slog.Logger
	clock   clockwork.Clock

	ctx       context.Context // ends at Close
	cancel    context.CancelFunc
	loops     sync.WaitGroup
	pokes     chan struct{} // asks for a progress notification
	stopped   chan struct{} // closed by Close
	closeOnce sync.Once

	mu        sync.Mutex
	cache     *cache
	histories map[Kind]*history
	// advanced is closed, and replaced, whenever the cache revision grows.
	advanced chan struct{}
	watchers map[*watcher]struct{}
	subs     map[*subscriber]struct{}
	closed   bool
}

// ErrClosed is returned by calls on a closed Registry.
var ErrClosed = errors.New("registry: closed")

// Open lists everything under the prefix, starts the watch that keeps the
// cache current and returns once the cache holds the list.
func Open(ctx context.Context, cli *clientv3.Client, o Options) (*Registry, error) {
	if cli == nil {
		return nil, errors.New("registry: no store client")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.History <= 0 {
		o.History = DefaultHistory
	}
	r := &Registry{
		cli:      cli,
		prefix:   o.Prefix,
		log:      o.Logger,
		clock:    o.Clock,
		pokes:    make(chan struct{}, 1),
		stopped:  make(chan struct{}),
		advanced: make(chan struct{}),
		watchers: map[*watcher]struct{}{},
		subs:     map[*subscriber]struct{}{},
	}
	c, err := r.list(ctx)
	if err != nil {
		return nil, err
	}
	r.cache = c
	r.histories = make(map[Kind]*history, len(allKinds))
	for _, k := range allKinds {
		r.histories[k] = newHistory(o.History, c.rev)
	}
	r.watcher = clientv3.NewWatcher(cli)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.loops.Add(2)
	go r.run(c.rev)
	go r.requestProgress()
	return r, nil
}

// Close stops the watch.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		// The loops end with the context; they do not wait for clientv3 to
		// close the watch.
		r.cancel()
		r.loops.Wait()
		// clientv3 can hang closing a watcher whose watch ended while it
		// was reconnecting to an unreachable store: close it aside.
		go func() { _ = r.watcher.Close() }()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.closed = true
		for w := range r.watchers {
			r.dropWatcher(w)
		}
		close(r.stopped)
	})
	return nil
}

// Snapshot returns the cache as it is now.
func (r *Registry) Snapshot() *Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cache.snapshot()
}

// Revision is the store revision the cache has caught up with.
func (r *Registry) Revision() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cache.rev
}

// Events returns the stored events, oldest first.
func (r *Registry) Events() []*api.Event {
	events, _ := r.EventList()
	return events
}

// EventList returns the stored events, oldest first, and the revision they
// were read at: a Watch of Events from it misses none and repeats none.
func (r *Registry) EventList() ([]*api.Event, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cache.sortedEvents(), r.cache.rev
}

// EventNames returns the names of the stored events (their keys below the
// events prefix, "<unix nanos, 20 digits>-<4 hex digits>"), oldest first,
// so that the garbage collector can delete old ones with Delete(Events,
// "", name, "").
func (r *Registry) EventNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cache.sortedEventNames()
}

// Change is one change of one object, for watch streams.
type Change struct {
	Kind     Kind
	Type     string // api.Added, api.Modified or api.Deleted
	Revision int64
	// Object is the object after the change (before it, for Deleted): a
	// *api.Job, *api.Allocation, *api.Node, *api.Namespace, *api.Event or
	// *Heartbeat.
	Object any
	// Prev is the object before the change (nil for Added).
	Prev any
}
