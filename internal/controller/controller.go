// Package controller holds herd's control loops: the job controller (creates,
// stops and replaces allocations, writes job status), the node controller
// (declares nodes down and their allocations lost when heartbeats stop) and
// the garbage collector (deletes finished allocations and old events).
//
// Each controller is a pure planning function from a registry snapshot and
// the current time to the store operations that bring the cluster closer to
// what the jobs ask for, plus a thin loop that takes a fresh snapshot, plans,
// commits and waits for the next change. Allocation names are deterministic
// and every write is conditional, so two controllers planning from the same
// snapshot write each change once and the loser re-plans.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-project/herd/internal/registry"
)

// Registry is what the controllers need of internal/registry.
type Registry interface {
	Snapshot() *registry.Snapshot
	Subscribe(kinds ...registry.Kind) (<-chan struct{}, func())
	Commit(ctx context.Context, ops ...registry.Op) (int64, error)
}

// EventLister is implemented by a registry that can name its stored events
// (the key names below the events prefix, "<unix-nanos, 20 digits>-<4 hex>").
// The garbage collector needs the names to delete events; without it, events
// are not collected.
type EventLister interface {
	EventNames() []string
}

// Defaults of Config.
const (
	DefaultNodeGracePeriod     = 5 * time.Second
	DefaultRescheduleBaseDelay = 5 * time.Second
	DefaultRescheduleMaxDelay  = 5 * time.Minute
	DefaultScaledDownRetention = time.Minute
	DefaultEventRetention      = time.Hour
)

// Config configures the controllers. Zero durations take the defaults.
type Config struct {
	Registry Registry
	Clock    clockwork.Clock
	Logger   *slog.Logger
	// NodeGracePeriod is how long a node may go without a heartbeat before
	// it is declared down.
	NodeGracePeriod time.Duration
	// RescheduleBaseDelay delays the placement of the first replacement of a
	// failed service allocation; it doubles with every attempt.
	RescheduleBaseDelay time.Duration
	// RescheduleMaxDelay caps that delay.
	RescheduleMaxDelay time.Duration
	// ScaledDownRetention is how long a scaled-down allocation is kept after
	// it stopped, so that its final status can be read.
	ScaledDownRetention time.Duration
	// EventRetention is how long events are kept.
	EventRetention time.Duration
	// Metrics, if set, receives the controllers' metrics.
	Metrics prometheus.Registerer
}

func (c *Config) defaults() error {
	if c.Registry == nil {
		return errors.New("controller: Config.Registry is required")
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for _, d := range []struct {
		field string
		value *time.Duration
		def   time.Duration
	}{
		{"NodeGracePeriod", &c.NodeGracePeriod, DefaultNodeGracePeriod},
		{"RescheduleBaseDelay", &c.RescheduleBaseDelay, DefaultRescheduleBaseDelay},
		{"RescheduleMaxDelay", &c.RescheduleMaxDelay, DefaultRescheduleMaxDelay},
		{"ScaledDownRetention", &c.ScaledDownRetention, DefaultScaledDownRetention},
		{"EventRetention", &c.EventRetention, DefaultEventRetention},
	} {
		if *d.value < 0 {
			return fmt.Errorf("controller: Config.%s must not be negative, got %s", d.field, *d.value)
		}
		if *d.value == 0 {
			*d.value = d.def
		}
	}
	return nil
}

// Run runs the job controller, the node controller and the garbage
// collector until ctx ends. It returns an error only for a bad Config.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return err
	}
	loops := []*loop{
		newLoop(cfg, m, newJobController(cfg)),
		newLoop(cfg, m, newNodeController(cfg)),
		newLoop(cfg, m, newGarbageCollector(cfg)),
	}
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}
