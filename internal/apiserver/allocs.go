package apiserver

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// compareAllocs orders allocations by namespace, job, group and index.
func compareAllocs(a, b *api.Allocation) int {
	return cmp.Or(
		strings.Compare(a.Namespace, b.Namespace),
		strings.Compare(a.Spec.Job, b.Spec.Job),
		strings.Compare(a.Spec.Group, b.Spec.Group),
		cmp.Compare(a.Spec.Index, b.Spec.Index),
		strings.Compare(a.Name, b.Name),
	)
}

func (s *Server) listAllocs(w http.ResponseWriter, r *http.Request) error {
	ns := r.PathValue("ns")
	q := r.URL.Query()
	job, node := q.Get("job"), q.Get("node")
	snap := s.reg.Snapshot()
	var matched []*api.Allocation
	for _, a := range snap.Allocs {
		if (ns == "" || a.Namespace == ns) && (job == "" || a.Spec.Job == job) && (node == "" || a.Spec.Node == node) {
			matched = append(matched, a)
		}
	}
	slices.SortFunc(matched, compareAllocs)
	items := make([]api.Allocation, len(matched))
	for i, a := range matched {
		items[i] = *a
	}
	writeJSON(w, http.StatusOK, api.List[api.Allocation]{Items: items, ResourceVersion: formatRev(snap.Revision)})
	return nil
}

func (s *Server) getAlloc(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	a := s.reg.Snapshot().Allocs[registry.Key(ns, name)]
	if a == nil {
		return allocNotFound(ns, name)
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func allocNotFound(ns, name string) error {
	return notFound("allocation %q not found in namespace %q", name, ns)
}

// agentStatuses are the client statuses an agent may report; lost is the
// node controller's verdict.
var agentStatuses = []api.ClientStatus{api.ClientPending, api.ClientRunning, api.ClientComplete, api.ClientFailed}

// reportAllocStatus records what an agent observed of an allocation. The
// report must name the incarnation (uid) and node the allocation has now:
// a replaced incarnation must not overwrite its replacement's status.
func (s *Server) reportAllocStatus(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	var rep api.AllocStatusReport
	if err := decodeBody(w, r, &rep); err != nil {
		return err
	}
	if err := validateReport(name, &rep); err != nil {
		return err
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	for range casAttempts {
		cur := s.reg.Snapshot().Allocs[registry.Key(ns, name)]
		if cur == nil {
			return allocNotFound(ns, name)
		}
		if cur.UID != rep.UID {
			return conflict("allocation %q in namespace %q is now incarnation %s, not %s: the report is for a replaced incarnation", name, ns, cur.UID, rep.UID)
		}
		if cur.Spec.Node != rep.Node {
			return conflict("allocation %q in namespace %q is placed on node %q, not %q", name, ns, cur.Spec.Node, rep.Node)
		}
		a := *cur
		a.Status = mergeStatus(cur.Status, rep.Status, s.clock.Now())
		_, err := s.reg.Commit(ctx, registry.Update(&a))
		if errors.Is(err, registry.ErrConflict) || errors.Is(err, registry.ErrNotFound) {
			continue // re-read: a replacement or a controller's write came first
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, &a)
		return nil
	}
	return conflict("allocation %q in namespace %q kept changing; try again", name, ns)
}

func validateReport(name string, rep *api.AllocStatusReport) error {
	var fes api.FieldErrors
	if rep.UID == "" {
		fes = append(fes, api.FieldError{Field: "uid", Message: "is required"})
	}
	if rep.Node == "" {
		fes = append(fes, api.FieldError{Field: "node", Message: "is required"})
	}
	if cs := rep.Status.ClientStatus; cs != "" && !slices.Contains(agentStatuses, cs) {
		fes = append(fes, api.FieldError{Field: "status.clientStatus", Message: fmt.Sprintf("must be one of %v, not %q", agentStatuses, cs)})
	}
	for task, ts := range rep.Status.Tasks {
		switch ts.State {
		case api.TaskPending, api.TaskRunning, api.TaskDead:
		default:
			fes = append(fes, api.FieldError{Field: "status.tasks." + task + ".state",
				Message: fmt.Sprintf("must be %q, %q or %q, not %q", api.TaskPending, api.TaskRunning, api.TaskDead, ts.State)})
		}
	}
	if len(fes) > 0 {
		slices.SortFunc(fes, func(a, b api.FieldError) int { return strings.Compare(a.Field, b.Field) })
		return invalid(fmt.Sprintf("status report of allocation %q", name), fes)
	}
	return nil
}

// mergeStatus applies an agent's report to the stored status: the client
// status and the reported tasks replace what is stored, events are
// appended (keeping the newest api.MaxAllocEvents), and the placement
// failure, which the scheduler owns, is kept.
func mergeStatus(cur, rep api.AllocStatus, now time.Time) api.AllocStatus {
	out := cur
	if rep.ClientStatus != "" {
		out.ClientStatus = rep.ClientStatus
	}
	if len(rep.Tasks) > 0 {
		out.Tasks = make(map[string]api.TaskState, len(cur.Tasks)+len(rep.Tasks))
		maps.Copy(out.Tasks, cur.Tasks)
		maps.Copy(out.Tasks, rep.Tasks)
	}
	if len(rep.Events) > 0 {
		out.Events = mergeEvents(cur.Events, rep.Events)
	}
	out.UpdatedAt = now
	return out
}

// mergeEvents joins the stored events with reported ones, in time order,
// keeping the latest api.MaxAllocEvents. An agent reports the events it
// knows, which include ones already stored, so equal events count once.
func mergeEvents(stored, reported []api.Event) []api.Event {
	type key struct {
		t                       int64
		reason, message, source string
	}
	seen := make(map[key]bool, len(stored)+len(reported))
	var events []api.Event
	for _, ev := range slices.Concat(stored, reported) {
		k := key{ev.Time.UnixNano(), ev.Reason, ev.Message, ev.Source}
		if !seen[k] {
			seen[k] = true
			events = append(events, ev)
		}
	}
	slices.SortStableFunc(events, func(a, b api.Event) int { return a.Time.Compare(b.Time) })
	if n := len(events) - api.MaxAllocEvents; n > 0 {
		events = slices.Clone(events[n:])
	}
	return events
}
