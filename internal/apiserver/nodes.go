package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// withHeartbeat returns a copy of n showing the last heartbeat its agent
// sent, which lives under its own key.
func withHeartbeat(snap *registry.Snapshot, n *api.Node) api.Node {
	c := *n
	if hb, ok := snap.Heartbeats[n.Name]; ok {
		c.Status.LastHeartbeat = hb.Time
	}
	return c
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	snap := s.reg.Snapshot()
	items := make([]api.Node, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		items = append(items, withHeartbeat(snap, n))
	}
	slices.SortFunc(items, func(a, b api.Node) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, api.List[api.Node]{Items: items, ResourceVersion: formatRev(snap.Revision)})
	return nil
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	snap := s.reg.Snapshot()
	n := snap.Nodes[name]
	if n == nil {
		return nodeNotFound(name)
	}
	writeJSON(w, http.StatusOK, withHeartbeat(snap, n))
	return nil
}

func nodeNotFound(name string) error {
	return notFound("node %q not found", name)
}

// registerNode stores a node as its agent describes it, with a heartbeat,
// in one commit. The operator's availability of a known node is kept; a
// new node is active unless the agent says otherwise.
func (s *Server) registerNode(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	var in api.Node
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	if in.Name != "" && in.Name != name {
		return badRequest("metadata.name %q does not match the name %q in the path", in.Name, name)
	}
	in.Name = name
	if err := in.Validate(); err != nil {
		return invalid(fmt.Sprintf("node %q", name), err)
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	for range casAttempts {
		now := s.clock.Now()
		cur := s.reg.Snapshot().Nodes[name]
		n := in
		n.Namespace = ""
		n.Status.Status = api.NodeReady
		n.Status.LastHeartbeat = time.Time{} // served from the heartbeat key
		hb := registry.PutHeartbeat(name, registry.Heartbeat{AgentID: in.Status.AgentID, Time: now})
		var ops []registry.Op
		created := cur == nil
		if created {
			if n.Spec.Availability == "" {
				n.Spec.Availability = api.Active
			}
			n.UID, n.ResourceVersion, n.CreatedAt = "", "", now
			ops = append(ops, registry.Create(&n), hb,
				s.event(api.KindNode, "", name, "Registered", "node registered by agent %s at %s", in.Status.AgentID, in.Status.Address))
		} else {
			n.Spec = cur.Spec
			n.UID, n.CreatedAt, n.ResourceVersion = cur.UID, cur.CreatedAt, cur.ResourceVersion
			ops = append(ops, registry.Update(&n), hb)
			if cur.Status.AgentID != in.Status.AgentID {
				ops = append(ops, s.event(api.KindNode, "", name, "Registered", "agent %s at %s took over the node", in.Status.AgentID, in.Status.Address))
			}
		}
		_, err := s.reg.Commit(ctx, ops...)
		if errors.Is(err, registry.ErrConflict) || errors.Is(err, registry.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		n.Status.LastHeartbeat = now
		code := http.StatusOK
		if created {
			code = http.StatusCreated
		}
		writeJSON(w, code, &n)
		return nil
	}
	return conflict("node %q kept changing; try again", name)
}

// heartbeat records that a registered node's agent is alive.
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	var hb api.Heartbeat
	if err := decodeBody(w, r, &hb); err != nil {
		return err
	}
	if s.reg.Snapshot().Nodes[name] == nil {
		return notFound("node %q is not registered (register it with PUT /v1/nodes/%s)", name, name)
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	if _, err := s.reg.Commit(ctx, registry.PutHeartbeat(name, registry.Heartbeat{AgentID: hb.AgentID, Time: s.clock.Now()})); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// setAvailability is the operator's say over new placements on a node.
func (s *Server) setAvailability(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	var req api.AvailabilityRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	switch req.Availability {
	case api.Active, api.Pause, api.Drain:
	default:
		return fieldInvalid(fmt.Sprintf("availability of node %q", name), "availability",
			"must be %q, %q or %q, not %q", api.Active, api.Pause, api.Drain, req.Availability)
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	for range casAttempts {
		snap := s.reg.Snapshot()
		cur := snap.Nodes[name]
		if cur == nil {
			return nodeNotFound(name)
		}
		if cur.Spec.Availability == req.Availability {
			out := withHeartbeat(snap, cur)
			writeJSON(w, http.StatusOK, &out)
			return nil
		}
		n := *cur
		n.Spec.Availability = req.Availability
		_, err := s.reg.Commit(ctx, registry.Update(&n), s.event(api.KindNode, "", name, "Availability",
			"availability set to %s (was %s)", req.Availability, cur.Spec.Availability))
		if errors.Is(err, registry.ErrConflict) || errors.Is(err, registry.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		out := withHeartbeat(s.reg.Snapshot(), &n)
		writeJSON(w, http.StatusOK, &out)
		return nil
	}
	return conflict("node %q kept changing; try again", name)
}
