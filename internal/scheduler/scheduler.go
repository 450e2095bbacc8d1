package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
)

// Registry is what the scheduler needs of the registry: a snapshot to
// decide from, a wake-up on changes and conditional writes.
type Registry interface {
	Snapshot() *registry.Snapshot
	Subscribe(kinds ...registry.Kind) (<-chan struct{}, func())
	Commit(ctx context.Context, ops ...registry.Op) (int64, error)
}

// Config configures a Scheduler.
type Config struct {
	// Registry is required.
	Registry Registry
	// Clock defaults to the real clock.
	Clock clockwork.Clock
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Strategy is "spread" (the default when empty) or "binpack", as a
	// command-line flag gives it; Run reports any other value.
	Strategy string
	// Metrics, if set, receives the scheduler's metrics.
	Metrics prometheus.Registerer
}

// Event source and reasons the scheduler records.
const (
	EventSource           = "scheduler"
	ReasonScheduled       = "Scheduled"
	ReasonPlacementFailed = "PlacementFailed"
)

// Backoff after a commit that failed for a reason other than a conflict
// (store unavailable, timeout): no change notification will come for
// those, so the scheduler retries on a timer.
const (
	minRetryDelay = time.Second
	maxRetryDelay = 30 * time.Second
)

// Scheduler places pending allocations: each pass runs Place over a
// registry snapshot and commits the outcome. It is level-triggered, so a
// missed or repeated wake-up is harmless.
type Scheduler struct {
	reg      Registry
	clock    clockwork.Clock
	log      *slog.Logger
	strategy Strategy
	metrics  *metrics
	// err is a configuration problem, returned by Run.
	err error

	// solo holds the keys of allocations whose shared Commit conflicted in
	// the last pass: they are committed one by one in the next pass, so
	// that the one another writer changed does not hold back the others.
	solo map[string]bool
	// retryDelay is the wait before retrying a commit that failed for a
	// reason other than a conflict; 0 after a success.
	retryDelay time.Duration
}

// New returns a scheduler; Run reports a problem with cfg.
func New(cfg Config) *Scheduler {
	s := &Scheduler{
		reg:   cfg.Registry,
		clock: cfg.Clock,
		log:   cfg.Logger,
	}
	if s.clock == nil {
		s.clock = clockwork.NewRealClock()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if s.reg == nil {
		errs = append(errs, errors.New("scheduler: Config.Registry is required"))
	}
	strategy, err := ParseStrategy(cfg.Strategy)
	if err != nil {
		errs = append(errs, fmt.Errorf("scheduler: Config.Strategy: %w", err))
	}
	s.strategy = strategy
	s.metrics, err = newMetrics(cfg.Metrics)
	if err != nil {
		errs = append(errs, fmt.Errorf("scheduler: Config.Metrics: %w", err))
	}
	s.err = errors.Join(errs...)
	return s
}

// Run places allocations until ctx ends, then returns nil. It passes once
// at start, then whenever allocations or nodes change and when the
// earliest NotBefore of a waiting allocation comes. It returns an error
// for a bad Config or when the registry ends the subscription.
func (s *Scheduler) Run(ctx context.Context) error {
	if s.err != nil {
		return s.err
	}
	changed, unsubscribe := s.reg.Subscribe(registry.Allocs, registry.Nodes)
	defer unsubscribe()
	for ctx.Err() == nil {
		wake := s.pass(ctx)
		if err := s.wait(ctx, changed, wake); err != nil {
			return err
		}
	}
	return nil
}

// wait returns when ctx ends, on a change notification or at wake (if not
// zero).
func (s *Scheduler) wait(ctx context.Context, changed <-chan struct{}, wake time.Time) error {
	var timer <-chan time.Time
	if !wake.IsZero() {
		t := s.clock.NewTimer(wake.Sub(s.clock.Now()))
		defer t.Stop()
		timer = t.Chan()
	}
	select {
	case <-ctx.Done():
	case _, ok := <-changed:
		if !ok {
			return errors.New("scheduler: the registry ended the subscription")
		}
	case <-timer:
	}
	return nil
}

// pass places what is pending now and commits the outcome. It returns when
// the next pass is due without a change notification (the earliest
// NotBefore still ahead, or a retry after a failed commit), or zero.
func (s *Scheduler) pass(ctx context.Context) (wake time.Time) {
	start := s.clock.Now()
	defer func() { s.metrics.passDuration.Observe(s.clock.Since(start).Seconds()) }()

	snap := s.reg.Snapshot()
	if snap == nil {
		snap = &registry.Snapshot{}
	}
	req := Request{Now: start, Strategy: s.strategy}
	req.Nodes = make([]*api.Node, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		req.Nodes = append(req.Nodes, n)
	}
	req.Allocs = make([]*api.Allocation, 0, len(snap.Allocs))
	for _, a := range snap.Allocs {
		req.Allocs = append(req.Allocs, a)
		if IsPending(a, start) {
			req.Pending = append(req.Pending, a)
		} else if waitsForNotBefore(a, start) && (wake.IsZero() || a.Spec.NotBefore.Before(wake)) {
			wake = a.Spec.NotBefore
		}
	}
	if len(req.Pending) == 0 {
		s.solo = nil
		return wake
	}

	decisions := Place(req)
	writes := s.writes(decisions, start)
	s.log.Debug("scheduler: pass", "pending", len(req.Pending), "nodes", len(req.Nodes), "writes", len(writes))
	if err := s.commit(ctx, writes); err != nil && ctx.Err() == nil {
		s.retryDelay = min(max(2*s.retryDelay, minRetryDelay), maxRetryDelay)
		s.log.Warn("scheduler: commit failed; retrying", "error", err, "in", s.retryDelay)
		if retry := start.Add(s.retryDelay); wake.IsZero() || retry.Before(wake) {
			wake = retry
		}
	} else {
		s.retryDelay = 0
	}
	return wake
}

// waitsForNotBefore reports whether a would be pending but for its
// NotBefore.
func waitsForNotBefore(a *api.Allocation, now time.Time) bool {
	return a != nil && a.Spec.NotBefore.After(now) && IsPending(a, a.Spec.NotBefore)
}

// write is what one decision commits: the allocation's update and the
// cluster event that records it.
type write struct {
	key string
	ops []registry.Op
	// node is where the allocation was placed, or "" for a failure.
	node    string
	failure string
}

// writes turns decisions into writes, leaving out failures whose
// explanation the allocation already carries.
func (s *Scheduler) writes(decisions []Decision, now time.Time) []write {
	var out []write
	for _, d := range decisions {
		a := d.Alloc
		ev := api.Event{
			Time:      now,
			Kind:      api.KindAllocation,
			Namespace: a.Namespace,
			Name:      a.Name,
			Source:    EventSource,
		}
		if d.Node != "" {
			ev.Type, ev.Reason, ev.Message = api.EventNormal, ReasonScheduled, "placed on "+d.Node
		} else {
			s.metrics.failures.Inc()
			if d.Failure == a.Status.PlacementFailure {
				continue
			}
			ev.Type, ev.Reason, ev.Message = api.EventWarning, ReasonPlacementFailed, d.Failure
		}
		updated := *a
		updated.Spec.Node = d.Node
		updated.Status.PlacementFailure = d.Failure
		updated.Status.Events = appendEvent(a.Status.Events, ev)
		out = append(out, write{
			key:     registry.Key(a.Namespace, a.Name),
			ops:     []registry.Op{registry.Update(&updated), registry.RecordEvent(ev)},
			node:    d.Node,
			failure: d.Failure,
		})
	}
	return out
}

// appendEvent returns a new slice of events ending with ev, keeping at most
// api.MaxAllocEvents.
func appendEvent(events []api.Event, ev api.Event) []api.Event {
	keep := events[max(0, len(events)+1-api.MaxAllocEvents):]
	out := make([]api.Event, 0, len(keep)+1)
	return append(append(out, keep...), ev)
}

// commit writes in as few Commits as registry.MaxOps allows, except the
// allocations marked solo, which go one per Commit. A conflicting Commit
// marks its allocations solo for the next pass, which a change
// notification brings: the conflict means the registry is about to see a
// newer version. Any other error stops the pass and is returned.
func (s *Scheduler) commit(ctx context.Context, writes []write) error {
	var batches [][]write
	var shared []write
	for _, w := range writes {
		if s.solo[w.key] {
			batches = append(batches, []write{w})
		} else {
			shared = append(shared, w)
		}
	}
	batches = append(batches, chunk(shared, registry.MaxOps)...)

	solo := map[string]bool{}
	defer func() { s.solo = solo }()
	for i, batch := range batches {
		var ops []registry.Op
		for _, w := range batch {
			ops = append(ops, w.ops...)
		}
		_, err := s.reg.Commit(ctx, ops...)
		switch {
		case err == nil:
			s.committed(batch)
		case errors.Is(err, registry.ErrConflict) || errors.Is(err, registry.ErrNotFound):
			s.metrics.conflicts.Inc()
			s.log.Info("scheduler: allocations changed while placing; retrying them one by one",
				"allocations", len(batch), "error", err)
			for _, w := range batch {
				solo[w.key] = true
			}
		default:
			// Keep the solo marks of the batches not tried.
			for _, rest := range batches[i:] {
				for _, w := range rest {
					if s.solo[w.key] {
						solo[w.key] = true
					}
				}
			}
			return fmt.Errorf("commit %d allocations: %w", len(batch), err)
		}
	}
	return nil
}

// committed logs and counts the writes of a successful Commit.
func (s *Scheduler) committed(batch []write) {
	for _, w := range batch {
		if w.node != "" {
			s.metrics.placements.Inc()
			s.log.Info("scheduler: placed allocation", "allocation", w.key, "node", w.node)
		} else {
			s.log.Warn("scheduler: cannot place allocation", "allocation", w.key, "reason", w.failure)
		}
	}
}

// chunk splits writes into batches of at most maxOps operations, keeping
// each write's operations together.
func chunk(writes []write, maxOps int) [][]write {
	var batches [][]write
	var batch []write
	ops := 0
	for _, w := range writes {
		if len(batch) > 0 && ops+len(w.ops) > maxOps {
			batches = append(batches, batch)
			batch, ops = nil, 0
		}
		batch = append(batch, w)
		ops += len(w.ops)
	}
	if len(batch) > 0 {
		batches = append(batches, batch)
	}
	return batches
}
