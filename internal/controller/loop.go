package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-project/herd/internal/registry"
)

// Retry delays after a pass whose writes failed (usually a conflict with
// another writer): short, so that a conflict is resolved quickly, and
// doubling, so that a write that keeps failing does not spin.
const (
	retryBaseDelay = 100 * time.Millisecond
	retryMaxDelay  = 10 * time.Second
	// commitTimeout bounds one Commit, so that an unreachable store stalls
	// a loop only until the next retry.
	commitTimeout = 30 * time.Second
)

// reconciler is one controller as its loop sees it.
type reconciler interface {
	name() string
	// kinds are the object kinds whose changes wake the controller.
	kinds() []registry.Kind
	// plan reads a fresh snapshot and returns the commits that move the
	// cluster toward the desired state, and when the controller wants to
	// plan again even if nothing changes (zero: only on a change).
	plan(now time.Time) (commits [][]registry.Op, next time.Time)
}

// loop runs one reconciler: plan, commit, wait for a change, a deadline or
// a retry.
type loop struct {
	r       reconciler
	reg     Registry
	clock   clockwork.Clock
	log     *slog.Logger
	metrics *metrics
}

func newLoop(cfg Config, m *metrics, r reconciler) *loop {
	return &loop{r: r, reg: cfg.Registry, clock: cfg.Clock, log: cfg.Logger.With("controller", r.name()), metrics: m}
}

func (l *loop) run(ctx context.Context) {
	changed, unsubscribe := l.reg.Subscribe(l.r.kinds()...)
	defer unsubscribe()
	failures := 0
	for ctx.Err() == nil {
		// A change notified before the snapshot is seen by this pass.
		select {
		case _, ok := <-changed:
			if !ok {
				changed = nil // a closed subscription must not make the loop spin
			}
		default:
		}
		next, err := l.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			delay := retryDelay(failures)
			l.log.Log(ctx, logLevel(err), "reconcile failed; retrying", "error", err, "retryIn", delay)
			l.sleep(ctx, delay)
			continue
		}
		failures = 0
		l.wait(ctx, changed, next)
	}
}

// pass plans once and commits every batch; a failed batch does not stop the
// others, since they are independent (one job's allocations, one node).
func (l *loop) pass(ctx context.Context) (time.Time, error) {
	commits, next := l.r.plan(l.clock.Now())
	l.metrics.passes.WithLabelValues(l.r.name()).Inc()
	var errs []error
	for _, ops := range commits {
		if len(ops) == 0 {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, commitTimeout)
		_, err := l.reg.Commit(cctx, ops...)
		cancel()
		l.metrics.commits.WithLabelValues(l.r.name(), commitResult(err)).Inc()
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		l.metrics.ops.WithLabelValues(l.r.name()).Add(float64(len(ops)))
		l.log.Debug("committed", "ops", describeOps(ops))
	}
	return next, errors.Join(errs...)
}

// wait returns on a change, at next (if set) or when ctx ends.
func (l *loop) wait(ctx context.Context, changed <-chan struct{}, next time.Time) {
	var timeout <-chan time.Time
	if !next.IsZero() {
		// At least a millisecond, so that a deadline that is already due
		// cannot make the loop spin.
		t := l.clock.NewTimer(max(next.Sub(l.clock.Now()), time.Millisecond))
		defer t.Stop()
		timeout = t.Chan()
	}
	select {
	case <-ctx.Done():
	case <-changed:
	case <-timeout:
	}
}

func (l *loop) sleep(ctx context.Context, d time.Duration) {
	t := l.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.Chan():
	}
}

// retryDelay is the wait after the failures-th failed pass in a row.
func retryDelay(failures int) time.Duration {
	return doubled(retryBaseDelay, failures-1, retryMaxDelay)
}

// doubled returns base doubled n times, at most limit.
func doubled(base time.Duration, n int, limit time.Duration) time.Duration {
	d := base
	for i := 0; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// logLevel logs conflicts, which are a normal part of optimistic
// concurrency, below other errors.
func logLevel(err error) slog.Level {
	if isConflictOnly(err) {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

func isConflictOnly(err error) bool {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			if !isConflictOnly(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, registry.ErrConflict) || errors.Is(err, registry.ErrNotFound)
}

func commitResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, registry.ErrConflict), errors.Is(err, registry.ErrNotFound):
		return "conflict"
	default:
		return "error"
	}
}

// metrics counts the controllers' work.
type metrics struct {
	passes  *prometheus.CounterVec
	commits *prometheus.CounterVec
	ops     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_controller_passes_total",
			Help: "Reconcile passes, by controller.",
		}, []string{"controller"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_controller_commits_total",
			Help: "Commits to the registry, by controller and result (ok, conflict, error).",
		}, []string{"controller", "result"}),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_controller_ops_total",
			Help: "Operations committed, by controller.",
		}, []string{"controller"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.passes, m.commits, m.ops} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("controller: registering metrics: %w", err)
		}
	}
	return m, nil
}
