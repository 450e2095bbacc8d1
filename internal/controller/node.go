package controller

import (
	"fmt"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// downMessagePrefix starts the message of a node declared down, so that
// the message can be cleared when the node is back without touching a
// message its agent wrote.
const downMessagePrefix = "no heartbeat for "

// nodeController declares nodes down (and their allocations lost) when their
// heartbeats stop, and ready again when they resume. It judges staleness by
// when it saw a node's heartbeat key change, on its own clock.
type nodeController struct {
	reg     Registry
	grace   time.Duration
	tracker heartbeatTracker
}

func newNodeController(cfg Config) *nodeController {
	return &nodeController{reg: cfg.Registry, grace: cfg.NodeGracePeriod, tracker: heartbeatTracker{}}
}

func (c *nodeController) name() string { return "node" }

func (c *nodeController) kinds() []registry.Kind {
	return []registry.Kind{registry.Heartbeats, registry.Nodes}
}

func (c *nodeController) plan(now time.Time) ([][]registry.Op, time.Time) {
	snap := c.reg.Snapshot()
	if snap == nil {
		return nil, time.Time{}
	}
	c.tracker.observe(snap, now)
	return planNodes(snap, c.tracker, now, c.grace)
}

// heartbeatSeen is when the node controller last saw a node's heartbeat
// revision change.
type heartbeatSeen struct {
	revision int64
	at       time.Time
	// changed is false until the revision changes after the first sight:
	// a node found down when the controller starts stays down until it
	// heartbeats again.
	changed bool
}

// heartbeatTracker holds what the node controller saw of each node's
// heartbeats, by node name.
type heartbeatTracker map[string]heartbeatSeen

// observe records the heartbeat revisions of snap's nodes as seen at now.
// A node seen for the first time gets a fresh grace period.
func (t heartbeatTracker) observe(snap *registry.Snapshot, now time.Time) {
	for name := range t {
		if snap.Nodes[name] == nil {
			delete(t, name)
		}
	}
	for name, n := range snap.Nodes {
		if n == nil {
			continue
		}
		rev := snap.Heartbeats[name].Revision
		seen, ok := t[name]
		switch {
		case !ok:
			t[name] = heartbeatSeen{revision: rev, at: now}
		case seen.revision != rev:
			t[name] = heartbeatSeen{revision: rev, at: now, changed: true}
		}
	}
}

// planNodes is the node controller's pure core: from a snapshot and what
// the tracker saw of heartbeats, at time now, it returns the commits that
// mark stale nodes down (with their unfinished allocations lost, in the
// same commit when it fits) and heard-from nodes ready, and the next time a
// node may go stale.
func planNodes(snap *registry.Snapshot, seen heartbeatTracker, now time.Time, grace time.Duration) ([][]registry.Op, time.Time) {
	onNode := map[string][]*api.Allocation{}
	for _, key := range sortedKeys(snap.Allocs) {
		a := snap.Allocs[key]
		if a != nil && a.Spec.Node != "" && !a.Status.ClientStatus.Terminal() {
			onNode[a.Spec.Node] = append(onNode[a.Spec.Node], a)
		}
	}
	var commits [][]registry.Op
	var next time.Time
	for _, name := range sortedKeys(snap.Nodes) {
		n := snap.Nodes[name]
		s, ok := seen[name]
		if n == nil || !ok {
			continue
		}
		deadline := s.at.Add(grace)
		stale := !now.Before(deadline)
		heard := s.changed && !stale
		var units []unit
		down := n.Status.Status == api.NodeDown
		switch {
		case stale:
			if !down {
				units = append(units, markDown(n, now, grace, len(onNode[name])))
			}
			down = true
		case heard && n.Status.Status != api.NodeReady:
			units = append(units, markReady(n, now))
			down = false
		}
		if down {
			for _, a := range onNode[name] {
				units = append(units, markLost(a, now))
			}
		} else if next.IsZero() || deadline.Before(next) {
			next = deadline
		}
		commits = append(commits, pack(units)...)
	}
	return commits, next
}

func markDown(n *api.Node, now time.Time, grace time.Duration, lost int) unit {
	d := *n
	d.Status.Status = api.NodeDown
	d.Status.Message = downMessagePrefix + grace.String()
	msg := d.Status.Message
	if lost > 0 {
		msg += "; " + plural(lost, "allocation") + " lost"
	}
	return unit{registry.Update(&d), registry.RecordEvent(api.Event{
		Time: now, Type: api.EventWarning, Kind: api.KindNode, Name: n.Name,
		Reason: "NodeDown", Message: msg, Source: sourceNodeController,
	})}
}

func markReady(n *api.Node, now time.Time) unit {
	r := *n
	r.Status.Status = api.NodeReady
	if strings.HasPrefix(r.Status.Message, downMessagePrefix) {
		r.Status.Message = ""
	}
	return unit{registry.Update(&r), registry.RecordEvent(api.Event{
		Time: now, Type: api.EventNormal, Kind: api.KindNode, Name: n.Name,
		Reason: "NodeReady", Message: "heartbeats resumed", Source: sourceNodeController,
	})}
}

func markLost(a *api.Allocation, now time.Time) unit {
	l := *a
	l.Status.ClientStatus = api.ClientLost
	l.Status.UpdatedAt = now
	l.Status.Events = withEvent(a.Status.Events, allocEvent(a, now, api.EventWarning, "NodeDown",
		fmt.Sprintf("node %s stopped heartbeating", a.Spec.Node), sourceNodeController))
	return unit{registry.Update(&l)}
}
