package controller

import (
	"strconv"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

const (
	// gcSlack delays a timed collection a little past the first deadline,
	// so that allocations that stopped within the same second go in one
	// commit rather than one each.
	gcSlack = time.Second
	// maxEventSweepInterval is the longest time between two looks at the
	// events; event writes do not wake the collector.
	maxEventSweepInterval = time.Minute
)

// garbageCollector deletes allocations nobody needs any more and old events.
type garbageCollector struct {
	reg                 Registry
	events              EventLister // nil: events are not collected
	scaledDownRetention time.Duration
	eventRetention      time.Duration
	nextEventSweep      time.Time
}

func newGarbageCollector(cfg Config) *garbageCollector {
	c := &garbageCollector{
		reg:                 cfg.Registry,
		scaledDownRetention: cfg.ScaledDownRetention,
		eventRetention:      cfg.EventRetention,
	}
	if l, ok := cfg.Registry.(EventLister); ok {
		c.events = l
	} else {
		cfg.Logger.Warn("the registry cannot name its events; old events will not be deleted")
	}
	return c
}

func (c *garbageCollector) name() string { return "gc" }

func (c *garbageCollector) kinds() []registry.Kind {
	return []registry.Kind{registry.Jobs, registry.Allocs}
}

func (c *garbageCollector) plan(now time.Time) ([][]registry.Op, time.Time) {
	snap := c.reg.Snapshot()
	if snap == nil {
		return nil, time.Time{}
	}
	var eventNames []string
	sweep := c.events != nil && !now.Before(c.nextEventSweep)
	if sweep {
		eventNames = c.events.EventNames()
		c.nextEventSweep = now.Add(min(maxEventSweepInterval, c.eventRetention))
	}
	g := gcPlan{now: now, scaledDownRetention: c.scaledDownRetention, eventRetention: c.eventRetention}
	units := g.allocs(snap)
	if sweep {
		units = append(units, g.events(eventNames)...)
	}
	next := g.nextAlloc
	if !next.IsZero() {
		next = next.Add(gcSlack)
	}
	if c.events != nil {
		eventsDue := c.nextEventSweep
		if g.nextEvent.After(eventsDue) {
			eventsDue = g.nextEvent
		}
		if next.IsZero() || eventsDue.Before(next) {
			next = eventsDue
		}
	}
	return pack(units), next
}

// gcPlan is the garbage collector's pure core.
type gcPlan struct {
	now                 time.Time
	scaledDownRetention time.Duration
	eventRetention      time.Duration
	// nextAlloc and nextEvent are when the next allocation or event becomes
	// collectable (zero: none is waiting).
	nextAlloc, nextEvent time.Time
}

// allocs deletes the allocations that are stopped for good: terminal,
// desired stop, and either of a job that no longer exists (at once) or
// beyond their group's count for longer than the retention. An allocation
// whose key the job still wants is left to the job controller, which
// reuses it.
func (g *gcPlan) allocs(snap *registry.Snapshot) []unit {
	var units []unit
	for _, key := range sortedKeys(snap.Allocs) {
		a := snap.Allocs[key]
		if a == nil || !a.Status.ClientStatus.Terminal() || a.Spec.DesiredStatus != api.DesiredStop {
			continue
		}
		job := snap.Jobs[registry.Key(a.Namespace, a.Spec.Job)]
		switch {
		case job == nil:
		case wants(job, a):
			continue
		case job.UID != a.Spec.JobUID:
		default:
			expiry := a.Status.UpdatedAt.Add(g.scaledDownRetention)
			if g.now.Before(expiry) {
				g.nextAlloc = earliest(g.nextAlloc, expiry)
				continue
			}
		}
		units = append(units, unit{registry.Delete(registry.Allocs, a.Namespace, a.Name, a.ResourceVersion)})
	}
	return units
}

// wants reports whether job has a group that wants a's key.
func wants(job *api.Job, a *api.Allocation) bool {
	for _, g := range job.Spec.Groups {
		if g.Name == a.Spec.Group {
			return a.Spec.Index < g.Count && a.Name == api.AllocName(job.Name, g.Name, a.Spec.Index)
		}
	}
	return false
}

// events deletes the events older than the retention. Event names start
// with their time in Unix nanoseconds; names that do not are left alone.
func (g *gcPlan) events(names []string) []unit {
	var units []unit
	for _, name := range names {
		at, ok := eventTime(name)
		if !ok {
			continue
		}
		expiry := at.Add(g.eventRetention)
		if g.now.Before(expiry) {
			g.nextEvent = earliest(g.nextEvent, expiry)
			continue
		}
		units = append(units, unit{registry.Delete(registry.Events, "", name, "")})
	}
	return units
}

// eventTime reads the time from an event key name
// ("<unix-nanos, 20 digits>-<4 hex>").
func eventTime(name string) (time.Time, bool) {
	digits, _, ok := strings.Cut(name, "-")
	if !ok {
		return time.Time{}, false
	}
	nanos, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || nanos < 0 {
		return time.Time{}, false
	}
	return time.Unix(0, nanos), true
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}
