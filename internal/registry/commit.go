package registry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/herd-project/herd/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// prepared is an Op ready for the transaction.
type prepared struct {
	op    Op
	kind  Kind
	key   string // store key
	name  string // kind/cache key, for errors
	value string // for puts
	// rev is the mod_revision an Update or conditional Delete requires.
	rev int64
}

// conditional reports whether the op compares before writing.
func (p *prepared) conditional() bool {
	return p.op.Type == OpCreate || p.op.Type == OpUpdate || (p.op.Type == OpDelete && p.rev != 0)
}

// Commit runs ops in one store transaction: all or none. On success it
// returns the revision, sets ResourceVersion on the objects written and
// waits for the cache to reach the revision, so a Snapshot taken afterwards
// shows the writes. If a condition fails it returns an error wrapping
// ErrConflict (or ErrNotFound) that names the key, once the cache shows
// the store as it was when the transaction failed.
func (r *Registry) Commit(ctx context.Context, ops ...Op) (int64, error) {
	if len(ops) == 0 {
		return 0, errors.New("registry: commit of no operations")
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	if len(ops) > MaxOps {
		return 0, fmt.Errorf("registry: %d operations in one commit, at most %d", len(ops), MaxOps)
	}
	ps := make([]*prepared, len(ops))
	seen := make(map[string]bool, len(ops))
	for i, op := range ops {
		p, err := r.prepare(op, seen)
		if err != nil {
			return 0, fmt.Errorf("registry: operation %d (%s): %w", i, op.Type, err)
		}
		if seen[p.key] {
			return 0, fmt.Errorf("registry: operation %d: %s is written twice in one commit", i, p.name)
		}
		seen[p.key] = true
		ps[i] = p
	}

	var cmps []clientv3.Cmp
	var then, reads []clientv3.Op
	for _, p := range ps {
		switch p.op.Type {
		case OpCreate:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(p.key), "=", 0))
		case OpUpdate:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p.key), "=", p.rev))
		case OpDelete:
			if p.rev != 0 {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p.key), "=", p.rev))
			}
		}
		if p.conditional() {
			// Read in the else branch, to tell which condition failed.
			reads = append(reads, clientv3.OpGet(p.key, clientv3.WithKeysOnly()))
		}
		if p.op.Type == OpDelete {
			then = append(then, clientv3.OpDelete(p.key))
		} else {
			then = append(then, clientv3.OpPut(p.key, p.value))
		}
	}
	resp, err := r.cli.Txn(ctx).If(cmps...).Then(then...).Else(reads...).Commit()
	if err != nil {
		return 0, fmt.Errorf("registry: commit: %w", err)
	}
	if !resp.Succeeded {
		// Let the cache catch up with the write that won, so that a retry
		// from a fresh Snapshot sees it instead of failing again.
		_ = r.WaitRevision(ctx, resp.Header.Revision)
		return 0, failure(ps, resp)
	}
	rev := resp.Header.Revision
	for _, p := range ps {
		switch o := p.op.Object.(type) {
		case api.Object:
			if p.op.Type != OpDelete {
				o.GetMeta().ResourceVersion = strconv.FormatInt(rev, 10)
			}
		case *Heartbeat:
			o.Revision = rev
		}
	}
	if err := r.WaitRevision(ctx, rev); err != nil {
		return rev, fmt.Errorf("registry: committed at revision %d: %w", rev, err)
	}
	return rev, nil
}

// failure explains a failed transaction from the else branch's reads: the
// first condition that does not hold.
func failure(ps []*prepared, resp *clientv3.TxnResponse) error {
	i := 0
	for _, p := range ps {
		if !p.conditional() {
			continue
		}
		if i >= len(resp.Responses) {
			break
		}
		rr := resp.Responses[i].GetResponseRange()
		i++
		if rr == nil {
			continue
		}
		exists := len(rr.Kvs) > 0
		switch {
		case p.op.Type == OpCreate && exists:
			return fmt.Errorf("%w: %s", ErrAlreadyExists, p.name)
		case p.op.Type != OpCreate && !exists:
			return fmt.Errorf("%w: %s", ErrNotFound, p.name)
		case p.op.Type != OpCreate && rr.Kvs[0].ModRevision != p.rev:
			return fmt.Errorf("%w: %s is at resourceVersion %d, not %d", ErrConflict, p.name, rr.Kvs[0].ModRevision, p.rev)
		}
	}
	return fmt.Errorf("%w: a condition of the transaction failed", ErrConflict)
}

// prepare checks an op, fills in what Commit fills in (UID, CreatedAt,
// namespace, event time and name) and encodes its object.
func (r *Registry) prepare(op Op, taken map[string]bool) (*prepared, error) {
	p := &prepared{op: op, kind: op.Kind}
	switch op.Type {
	case OpCreate, OpUpdate, OpUpsert:
		if err := r.preparePut(p, taken); err != nil {
			return nil, err
		}
	case OpDelete:
		if !op.Kind.known() {
			return nil, fmt.Errorf("unknown kind %q", op.Kind)
		}
		if op.Kind.namespaced() && p.op.Namespace == "" {
			p.op.Namespace = api.DefaultNamespace
		}
	default:
		return nil, fmt.Errorf("unknown operation type %d", op.Type)
	}
	if err := checkKeyPart("name", p.op.Name); err != nil {
		return nil, err
	}
	if p.kind.namespaced() {
		if err := checkKeyPart("namespace", p.op.Namespace); err != nil {
			return nil, err
		}
	}
	p.key = r.storeKey(p.kind, p.op.Namespace, p.op.Name)
	p.name = string(p.kind) + "/" + cacheKey(p.kind, p.op.Namespace, p.op.Name)
	if p.op.Type == OpUpdate || (p.op.Type == OpDelete && p.op.ResourceVersion != "") {
		rev, err := parseResourceVersion(p.op.ResourceVersion)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		p.rev = rev
	}
	if p.op.Type != OpDelete {
		b, err := encode(p.op.Object)
		if err != nil {
			return nil, err
		}
		p.value = string(b)
	}
	return p, nil
}

// preparePut decides the kind and name of a put from its object; taken
// holds the keys of the commit's earlier ops.
func (r *Registry) preparePut(p *prepared, taken map[string]bool) error {
	switch o := p.op.Object.(type) {
	case *Heartbeat:
		if o == nil {
			return errors.New("nil heartbeat")
		}
		if p.kind != Heartbeats && p.kind != "" {
			return fmt.Errorf("a heartbeat cannot be stored as %q", p.kind)
		}
		p.kind = Heartbeats
	case *api.Event:
		if o == nil {
			return errors.New("nil event")
		}
		if p.kind != Events && p.kind != "" {
			return fmt.Errorf("an event cannot be stored as %q", p.kind)
		}
		p.kind = Events
		if o.Time.IsZero() {
			o.Time = r.clock.Now()
		}
		if p.op.Name == "" {
			p.op.Name = r.newEventName(o.Time, taken)
		}
	case api.Object:
		kind, m := KindOf(o), metaOf(o)
		if kind == "" || m == nil {
			return fmt.Errorf("cannot store a %T", p.op.Object)
		}
		if p.kind != kind && p.kind != "" {
			return fmt.Errorf("a %T cannot be stored as %q", p.op.Object, p.kind)
		}
		p.kind = kind
		if kind.namespaced() && m.Namespace == "" {
			m.Namespace = api.DefaultNamespace
		}
		if p.op.Type == OpCreate {
			if m.UID == "" {
				m.UID = uuid.NewString()
			}
			if m.CreatedAt.IsZero() {
				m.CreatedAt = r.clock.Now()
			}
		}
		if p.op.Type == OpUpdate && p.op.ResourceVersion == "" {
			p.op.ResourceVersion = m.ResourceVersion
		}
		// The object decides its key, whatever the op says.
		p.op.Namespace, p.op.Name = m.Namespace, m.Name
		if !kind.namespaced() {
			p.op.Namespace = ""
		}
	case nil:
		return errors.New("no object to put")
	default:
		return fmt.Errorf("cannot store a %T", p.op.Object)
	}
	return nil
}

// checkKeyPart rejects names that would break the key layout.
func checkKeyPart(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if strings.ContainsAny(s, "/\x00") {
		return fmt.Errorf("%s %q contains '/' or NUL", what, s)
	}
	return nil
}

// newEventName names an event recorded at t, avoiding the names of cached
// events and of the commit's other ops, so that events of the same
// nanosecond (a coarse or fake clock) do not overwrite each other.
func (r *Registry) newEventName(t time.Time, taken map[string]bool) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := eventName(t)
	for range 16 {
		if _, cached := r.cache.events.get(name); !cached && !taken[r.storeKey(Events, "", name)] {
			break
		}
		name = eventName(t)
	}
	return name
}
