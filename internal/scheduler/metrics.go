package scheduler

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the scheduler's Prometheus metrics.
type metrics struct {
	placements   prometheus.Counter
	failures     prometheus.Counter
	conflicts    prometheus.Counter
	passDuration prometheus.Histogram
}

// newMetrics creates the metrics and registers them on reg unless it is
// nil. Metrics a registry already holds (a second scheduler in the same
// process) are shared.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		placements: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "herd", Subsystem: "scheduler", Name: "placements_total",
			Help: "Allocations bound to a node.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "herd", Subsystem: "scheduler", Name: "placement_failures_total",
			Help: "Placement attempts that found no eligible node, counted once per allocation and pass.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "herd", Subsystem: "scheduler", Name: "commit_conflicts_total",
			Help: "Commits rejected because an allocation changed since the snapshot.",
		}),
		passDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "herd", Subsystem: "scheduler", Name: "pass_duration_seconds",
			Help:    "Duration of one scheduling pass: snapshot, placement and commits.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.placements = register(reg, m.placements, &err)
	m.failures = register(reg, m.failures, &err)
	m.conflicts = register(reg, m.conflicts, &err)
	m.passDuration = register(reg, m.passDuration, &err)
	return m, err
}

// register registers c on reg and returns it, or the collector reg already
// has under its name. Other errors are joined into errp.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing
		}
	}
	*errp = errors.Join(*errp, err)
	return c
}
