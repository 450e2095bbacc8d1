package agent

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/herd-project/herd/internal/driver"
)

// driverState is what one fingerprint says of a driver, as far as the node
// advertises it.
type driverState struct {
	healthy bool
	message string
}

// describe is the state as the node's message and the log say it.
func (s driverState) describe() string {
	if s.healthy {
		return s.message
	}
	if s.message == "" {
		return "unhealthy"
	}
	return "unhealthy: " + s.message
}

// fingerprints is one round of driver fingerprints.
type fingerprints struct {
	// order is the drivers' names in configuration order.
	order  []string
	states map[string]driverState
	// attributes are the drivers' attributes, under driver.<name>.
	attributes map[string]string
	// healthy are the drivers tasks may use.
	healthy map[string]driver.Driver
}

// fingerprintDrivers asks every driver for its fingerprint, each bounded
// by fingerprintTimeout.
func fingerprintDrivers(ctx context.Context, drivers []driver.Driver) fingerprints {
	f := fingerprints{
		states:     map[string]driverState{},
		attributes: map[string]string{},
		healthy:    map[string]driver.Driver{},
	}
	for _, d := range drivers {
		fctx, cancel := context.WithTimeout(ctx, fingerprintTimeout)
		fp := d.Fingerprint(fctx)
		cancel()
		name := d.Name()
		// Driver attributes live under driver.<name>.; keys a driver
		// already prefixed are kept as they are.
		prefix := "driver." + name + "."
		for k, v := range fp.Attributes {
			if !strings.HasPrefix(k, prefix) {
				k = prefix + k
			}
			f.attributes[k] = v
		}
		f.order = append(f.order, name)
		f.states[name] = driverState{healthy: fp.Healthy, message: fp.Message}
		if fp.Healthy {
			f.healthy[name] = d
		}
	}
	return f
}

// message gathers what the drivers say of themselves, for the node's
// status: "exec: cgroups unavailable; docker: unhealthy: daemon unreachable".
func (f fingerprints) message() string {
	var parts []string
	for _, name := range f.order {
		if desc := f.states[name].describe(); desc != "" {
			parts = append(parts, name+": "+desc)
		}
	}
	return strings.Join(parts, "; ")
}

// driverChanges describes how the drivers' health and messages changed
// from old to cur, one line per changed driver in configuration order; none
// when the node's advertisement stays the same.
func driverChanges(old, cur fingerprints) []string {
	var out []string
	for _, name := range cur.order {
		was, had := old.states[name]
		now := cur.states[name]
		switch {
		case had && was == now:
		case now.healthy && (!had || !was.healthy):
			line := fmt.Sprintf("driver %s became healthy", name)
			if now.message != "" {
				line += ": " + now.message
			}
			out = append(out, line)
		case !now.healthy && (!had || was.healthy):
			out = append(out, fmt.Sprintf("driver %s became %s", name, now.describe()))
		case !now.healthy:
			out = append(out, fmt.Sprintf("driver %s is still %s", name, now.describe()))
		case now.message == "":
			out = append(out, fmt.Sprintf("driver %s: healthy (no longer: %s)", name, was.message))
		default:
			out = append(out, fmt.Sprintf("driver %s: %s", name, now.message))
		}
	}
	return out
}

// fingerprintLoop fingerprints the drivers every FingerprintInterval. When
// a driver's health or message changed it hands the healthy drivers to the
// reconcile loop (so admission follows) and registers the node again (so
// the scheduler follows). A failed registration is retried on the next
// round even if nothing changed since.
func (a *Agent) fingerprintLoop(ctx context.Context) {
	t := a.clock.NewTicker(a.cfg.FingerprintInterval)
	defer t.Stop()
	stale := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		cur := fingerprintDrivers(ctx, a.cfg.Drivers)
		if ctx.Err() != nil {
			return
		}
		a.nodeMu.Lock()
		changes := driverChanges(a.machine.fingerprints, cur)
		if len(changes) > 0 {
			a.machine.applyFingerprints(cur)
		}
		a.nodeMu.Unlock()
		for _, line := range changes {
			a.log.Warn(line)
		}
		if len(changes) > 0 {
			a.offerDrivers(cur.healthy)
			stale = true
		}
		if !stale {
			continue
		}
		if err := a.registerOnce(ctx); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("registering the node with its changed drivers failed; will retry", "err", err)
			}
			continue
		}
		stale = false
		a.log.Info("node registered again with its drivers", "drivers", cur.healthyNames(), "message", cur.message())
	}
}

// healthyNames lists the healthy drivers in configuration order.
func (f fingerprints) healthyNames() []string {
	var names []string
	for _, name := range f.order {
		if f.states[name].healthy {
			names = append(names, name)
		}
	}
	return names
}

// offerDrivers hands the healthy drivers to the reconcile loop, replacing
// any set it has not taken yet.
func (a *Agent) offerDrivers(healthy map[string]driver.Driver) {
	healthy = maps.Clone(healthy)
	select {
	case <-a.driversCh:
	default:
	}
	a.driversCh <- healthy
}
