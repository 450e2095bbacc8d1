package lease

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/herd-project/herd/internal/store/mvcc"
)

const (
	// MaxLeaseTTL is the largest TTL, in seconds, a lease may be granted
	// (etcd's lease.MaxLeaseTTL).
	MaxLeaseTTL = 9000000000

	// DefaultMinTTL is the smallest TTL, in seconds, a lease gets. etcd
	// derives it from the election timeout: ceil(1.5 * 10 ticks * 100ms) with
	// its default --election-timeout and --heartbeat-interval.
	DefaultMinTTL = 2

	// retryInterval is how long the expiry loop waits before trying again to
	// revoke an expired lease whose revocation failed (etcd retries too).
	retryInterval = 3 * time.Second
)

// Errors returned by the Lessor. They carry etcd's lessor messages.
var (
	ErrLeaseNotFound    = errors.New("lease not found")
	ErrLeaseExists      = errors.New("lease already exists")
	ErrLeaseTTLTooLarge = errors.New("too large lease TTL")
)

// Backend persists leases and the keys attached to them. NewStoreBackend
// adapts an *mvcc.Store.
type Backend interface {
	// GrantLease persists a lease; mvcc.ErrLeaseExists if the ID is taken.
	GrantLease(id, ttl int64) error
	// RevokeLease deletes the lease and its keys in one revision;
	// mvcc.ErrLeaseNotFound if there is no such lease.
	RevokeLease(id int64) error
	// Leases lists the persisted leases.
	Leases() []mvcc.Lease
	// LeaseKeys lists the keys attached to a lease, sorted.
	LeaseKeys(id int64) []string
}

// Config configures a Lessor. Zero fields get defaults.
type Config struct {
	// Clock drives expiry; defaults to the real clock.
	Clock clockwork.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MinTTL is the smallest TTL in seconds; defaults to DefaultMinTTL.
	MinTTL int64
	// RestartGrace is added to the TTL of the leases found at start, as etcd
	// adds its election timeout when a member becomes leader.
	RestartGrace time.Duration
}

// Status describes one lease.
type Status struct {
	ID int64
	// TTL is the remaining time in whole seconds, truncated as etcd does; it
	// is zero or negative for a lease that expired but is not revoked yet.
	TTL int64
	// GrantedTTL is the TTL the lease was granted with, after raising it to
	// the minimum.
	GrantedTTL int64
	// Keys are the attached keys, sorted; only filled when asked for.
	Keys []string
}

// Lessor times leases and revokes the expired ones. Its methods are safe for
// concurrent use; Run must be running for expired leases to be revoked
// without a client touching them.
type Lessor struct {
	backend Backend
	clock   clockwork.Clock
	log     *slog.Logger
	minTTL  int64

	// writeMu serialises grants and revocations so that the in-memory table
	// always follows the engine.
	writeMu sync.Mutex

	mu     sync.Mutex
	leases map[int64]*lease
	queue  expiryQueue

	// wake tells Run that a lease with a possibly earlier deadline arrived.
	wake chan struct{}
}

type lease struct {
	id     int64
	ttl    int64
	expiry time.Time
}

// New builds a lessor over the leases b already holds, giving each its full
// TTL plus cfg.RestartGrace from now.
func New(b Backend, cfg Config) *Lessor {
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MinTTL <= 0 {
		cfg.MinTTL = DefaultMinTTL
	}
	ls := &Lessor{
		backend: b,
		clock:   cfg.Clock,
		log:     cfg.Logger,
		minTTL:  cfg.MinTTL,
		leases:  make(map[int64]*lease),
		wake:    make(chan struct{}, 1),
	}
	now := ls.clock.Now()
	for _, p := range b.Leases() {
		ttl := max(p.TTL, ls.minTTL)
		l := &lease{id: p.ID, ttl: ttl, expiry: now.Add(cfg.RestartGrace + ttlDuration(ttl))}
		ls.leases[l.id] = l
		heap.Push(&ls.queue, queued{l: l, at: l.expiry})
	}
	return ls
}

// ttlDuration converts a TTL in seconds; TTLs are bounded by MaxLeaseTTL, which
// fits in a time.Duration.
func ttlDuration(ttl int64) time.Duration { return time.Duration(ttl) * time.Second }

// Grant creates a lease. id 0 asks for a server-chosen positive ID. A TTL
// below the minimum is raised to it. It returns the ID and the granted TTL.
func (ls *Lessor) Grant(id, ttl int64) (int64, int64, error) {
	if ttl > MaxLeaseTTL {
		return 0, 0, ErrLeaseTTLTooLarge
	}
	ttl = max(ttl, ls.minTTL)

	ls.writeMu.Lock()
	defer ls.writeMu.Unlock()
	if id == 0 {
		id = ls.freeID()
	}
	if err := ls.backend.GrantLease(id, ttl); err != nil {
		if errors.Is(err, mvcc.ErrLeaseExists) {
			return 0, 0, ErrLeaseExists
		}
		return 0, 0, fmt.Errorf("grant lease %d: %w", id, err)
	}
	l := &lease{id: id, ttl: ttl, expiry: ls.clock.Now().Add(ttlDuration(ttl))}
	ls.mu.Lock()
	ls.leases[id] = l
	heap.Push(&ls.queue, queued{l: l, at: l.expiry})
	ls.mu.Unlock()
	select {
	case ls.wake <- struct{}{}:
	default:
	}
	return id, ttl, nil
}

// freeID picks a random positive ID not in use. The caller holds writeMu,
// so the table matches the engine.
func (ls *Lessor) freeID() int64 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for {
		id := rand.Int64N(math.MaxInt64) + 1
		if _, taken := ls.leases[id]; !taken {
			return id
		}
	}
}

// Revoke deletes the lease and its keys.
func (ls *Lessor) Revoke(id int64) error {
	ls.writeMu.Lock()
	defer ls.writeMu.Unlock()
	err := ls.backend.RevokeLease(id)
	if err != nil && !errors.Is(err, mvcc.ErrLeaseNotFound) {
		return fmt.Errorf("revoke lease %d: %w", id, err)
	}
	ls.mu.Lock()
	delete(ls.leases, id)
	ls.mu.Unlock()
	if err != nil {
		return ErrLeaseNotFound
	}
	return nil
}

// Renew restarts the lease's TTL and returns it. A lease that already
// expired is revoked on the spot and reported as not found, as etcd's
// keepalive reports it once the revocation is through.
func (ls *Lessor) Renew(id int64) (int64, error) {
	ls.mu.Lock()
	l := ls.leases[id]
	if l == nil {
		ls.mu.Unlock()
		return -1, ErrLeaseNotFound
	}
	now := ls.clock.Now()
	if !now.Before(l.expiry) {
		ls.mu.Unlock()
		if err := ls.revokeExpired(l); err != nil {
			return -1, err
		}
		return -1, ErrLeaseNotFound
	}
	l.expiry = now.Add(ttlDuration(l.ttl))
	ttl := l.ttl
	ls.mu.Unlock()
	return ttl, nil
}

// TimeToLive describes the lease, with its keys if keys is set.
func (ls *Lessor) TimeToLive(id int64, keys bool) (Status, error) {
	ls.mu.Lock()
	l := ls.leases[id]
	if l == nil {
		ls.mu.Unlock()
		return Status{}, ErrLeaseNotFound
	}
	st := Status{
		ID:         id,
		TTL:        int64(l.expiry.Sub(ls.clock.Now()).Seconds()),
		GrantedTTL: l.ttl,
	}
	ls.mu.Unlock()
	if keys {
		st.Keys = ls.backend.LeaseKeys(id)
	}
	return st, nil
}

// Leases lists the lease IDs, the one expiring first first.
func (ls *Lessor) Leases() []int64 {
	ls.mu.Lock()
	all := make([]*lease, 0, len(ls.leases))
	for _, l := range ls.leases {
		all = append(all, l)
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].expiry.Equal(all[j].expiry) {
			return all[i].expiry.Before(all[j].expiry)
		}
		return all[i].id < all[j].id
	})
	ls.mu.Unlock()
	ids := make([]int64, len(all))
	for i, l := range all {
		ids[i] = l.id
	}
	return ids
}

// Run revokes leases as they expire, until ctx is done.
func (ls *Lessor) Run(ctx context.Context) {
	for {
		due, next, ok := ls.collectDue()
		for _, l := range due {
			if err := ls.revokeExpired(l); err != nil {
				ls.log.Warn("failed to revoke expired lease", "lease", l.id, "error", err)
			}
		}
		if len(due) > 0 {
			// Revocations take time; look again before sleeping.
			continue
		}
		var timerC <-chan time.Time
		var timer clockwork.Timer
		if ok {
			timer = ls.armTimer(next)
			timerC = timer.Chan()
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-ls.wake:
		case <-timerC:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// armTimer returns a timer that fires at deadline. If the clock jumped while
// the timer was being armed (a long pause, or a fake clock advanced
// concurrently) the timer would fire late by the jump, so it is armed again.
func (ls *Lessor) armTimer(deadline time.Time) clockwork.Timer {
	for {
		now := ls.clock.Now()
		t := ls.clock.NewTimer(deadline.Sub(now))
		if ls.clock.Since(now) < time.Millisecond {
			return t
		}
		t.Stop()
	}
}

// collectDue pops the queue entries that are due and returns the leases that
// did expire, and the deadline of the next entry if there is one. Entries of
// renewed leases go back in at their new deadline.
func (ls *Lessor) collectDue() (due []*lease, next time.Time, ok bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := ls.clock.Now()
	for ls.queue.Len() > 0 && !ls.queue[0].at.After(now) {
		q := heap.Pop(&ls.queue).(queued)
		if ls.leases[q.l.id] != q.l {
			continue // revoked, or replaced by a new lease with the same ID
		}
		if now.Before(q.l.expiry) {
			heap.Push(&ls.queue, queued{l: q.l, at: q.l.expiry})
			continue
		}
		due = append(due, q.l)
	}
	if ls.queue.Len() > 0 {
		return due, ls.queue[0].at, true
	}
	return due, time.Time{}, false
}

// revokeExpired revokes l if it is still the current, expired lease of its
// ID. On failure it schedules a retry and returns the error.
func (ls *Lessor) revokeExpired(l *lease) error {
	ls.writeMu.Lock()
	defer ls.writeMu.Unlock()
	ls.mu.Lock()
	current := ls.leases[l.id] == l
	ls.mu.Unlock()
	if !current {
		return nil
	}
	err := ls.backend.RevokeLease(l.id)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if err != nil && !errors.Is(err, mvcc.ErrLeaseNotFound) {
		heap.Push(&ls.queue, queued{l: l, at: ls.clock.Now().Add(retryInterval)})
		return fmt.Errorf("revoke expired lease %d: %w", l.id, err)
	}
	delete(ls.leases, l.id)
	ls.log.Debug("revoked expired lease", "lease", l.id)
	return nil
}

// queued is a lease's place in the expiry queue. at may be earlier than the
// lease's deadline if it was renewed since; the entry is then pushed back.
type queued struct {
	l  *lease
	at time.Time
}

// expiryQueue is a min-heap of queued by at.
type expiryQueue []queued

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q expiryQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *expiryQueue) Push(x any)        { *q = append(*q, x.(queued)) }
func (q *expiryQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	old[len(old)-1] = queued{}
	*q = old[:len(old)-1]
	return x
}
