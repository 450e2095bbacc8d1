package apiserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// event is an event the API server records about an object.
func (s *Server) event(kind, ns, name, reason, format string, args ...any) registry.Op {
	return registry.RecordEvent(api.Event{
		Time: s.clock.Now(), Type: api.EventNormal, Kind: kind, Namespace: ns, Name: name,
		Reason: reason, Message: fmt.Sprintf(format, args...), Source: eventSource,
	})
}

// checkNamespace returns 404 unless namespace ns exists ("default" always
// does).
func checkNamespace(snap *registry.Snapshot, ns string) error {
	if ns == api.DefaultNamespace || snap.Namespaces[ns] != nil {
		return nil
	}
	return notFound("namespace %q not found (create it with PUT /v1/namespaces/%s)", ns, ns)
}

// jobFromBody decodes, defaults and validates the job of a create or put
// request in namespace ns; name is the name in the path ("" for create).
func jobFromBody(w http.ResponseWriter, r *http.Request, ns, name string) (*api.Job, error) {
	var j api.Job
	if err := decodeBody(w, r, &j); err != nil {
		return nil, err
	}
	if j.Namespace != "" && j.Namespace != ns {
		return nil, badRequest("metadata.namespace %q does not match the namespace %q in the path", j.Namespace, ns)
	}
	j.Namespace = ns
	if name != "" {
		if j.Name != "" && j.Name != name {
			return nil, badRequest("metadata.name %q does not match the name %q in the path", j.Name, name)
		}
		j.Name = name
	}
	j.Defaults()
	if err := j.Validate(); err != nil {
		return nil, invalid(fmt.Sprintf("job %q", j.Name), err)
	}
	// Controllers own the status; the registry owns identity and version.
	j.Status = api.JobStatus{}
	return &j, nil
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	ns := r.PathValue("ns")
	snap := s.reg.Snapshot()
	items := make([]api.Job, 0, len(snap.Jobs))
	for _, j := range snap.Jobs {
		if ns == "" || j.Namespace == ns {
			items = append(items, *j)
		}
	}
	slices.SortFunc(items, func(a, b api.Job) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	writeJSON(w, http.StatusOK, api.List[api.Job]{Items: items, ResourceVersion: formatRev(snap.Revision)})
	return nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	j := s.reg.Snapshot().Jobs[registry.Key(ns, name)]
	if j == nil {
		return jobNotFound(ns, name)
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

func jobNotFound(ns, name string) error {
	return notFound("job %q not found in namespace %q", name, ns)
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) error {
	ns := r.PathValue("ns")
	j, err := jobFromBody(w, r, ns, "")
	if err != nil {
		return err
	}
	if err := checkNamespace(s.reg.Snapshot(), ns); err != nil {
		return err
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	j.UID, j.ResourceVersion, j.CreatedAt = "", "", s.clock.Now()
	_, err = s.reg.Commit(ctx, registry.Create(j), s.event(api.KindJob, ns, j.Name, "Created", "job created"))
	if errors.Is(err, registry.ErrConflict) {
		return apiErr(http.StatusConflict, api.ReasonAlreadyExists, "job %q already exists in namespace %q", j.Name, ns)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, j)
	return nil
}

// putJob creates or updates a job. With a resourceVersion in the body the
// update is conditional on it; without, it applies to whatever version is
// stored, retrying when a controller writes in between.
func (s *Server) putJob(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	in, err := jobFromBody(w, r, ns, name)
	if err != nil {
		return err
	}
	var want int64
	if in.ResourceVersion != "" {
		if want, err = parseVersion(fmt.Sprintf("job %q", name), "metadata.resourceVersion", in.ResourceVersion); err != nil {
			return err
		}
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	s.catchUp(ctx, want)
	for range casAttempts {
		snap := s.reg.Snapshot()
		if err := checkNamespace(snap, ns); err != nil {
			return err
		}
		cur := snap.Jobs[registry.Key(ns, name)]
		j := *in
		if cur == nil {
			if want != 0 {
				return jobNotFound(ns, name)
			}
			j.UID, j.ResourceVersion, j.CreatedAt = "", "", s.clock.Now()
			_, err := s.reg.Commit(ctx, registry.Create(&j), s.event(api.KindJob, ns, name, "Created", "job created"))
			if errors.Is(err, registry.ErrConflict) {
				continue // created meanwhile: update it
			}
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusCreated, &j)
			return nil
		}
		if want != 0 && cur.ResourceVersion != in.ResourceVersion {
			return staleJob(ns, name, cur.ResourceVersion, in.ResourceVersion)
		}
		j.UID, j.CreatedAt, j.Status, j.ResourceVersion = cur.UID, cur.CreatedAt, cur.Status, cur.ResourceVersion
		if sameJobSpec(cur, &j) {
			writeJSON(w, http.StatusOK, cur)
			return nil
		}
		_, err := s.reg.Commit(ctx, registry.Update(&j), s.event(api.KindJob, ns, name, "Updated", "job updated"))
		if errors.Is(err, registry.ErrConflict) || errors.Is(err, registry.ErrNotFound) {
			if want != 0 {
				return conflict("job %q in namespace %q changed since resourceVersion %s: get it again and retry", name, ns, in.ResourceVersion)
			}
			continue
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, &j)
		return nil
	}
	return conflict("job %q in namespace %q kept changing; try again", name, ns)
}

// catchUpTimeout bounds the wait for a resource version the cache has not
// seen yet.
const catchUpTimeout = time.Second

// catchUp gives the cache a moment to reach a resource version a client
// read elsewhere (from another API server), so that it is compared with
// what is stored rather than with an older copy. A version that does not
// arrive (a made-up one) is then simply compared, and conflicts.
func (s *Server) catchUp(ctx context.Context, rev int64) {
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	_ = s.reg.WaitRevision(ctx, rev)
}

func staleJob(ns, name, cur, want string) error {
	return conflict("job %q in namespace %q is at resourceVersion %s, not %s: get it again and retry", name, ns, cur, want)
}

// sameJobSpec reports whether an update would change nothing the user
// controls, so that applying the same file twice writes nothing.
func sameJobSpec(a, b *api.Job) bool {
	return reflect.DeepEqual(a.Spec, b.Spec) && maps.Equal(a.Labels, b.Labels)
}

// deleteJob deletes a job whatever its version: controllers keep writing
// its status, and a delete should not have to race them.
func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	cur := s.reg.Snapshot().Jobs[registry.Key(ns, name)]
	if cur == nil {
		return jobNotFound(ns, name)
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	if _, err := s.reg.Commit(ctx, registry.Delete(registry.Jobs, ns, name, ""),
		s.event(api.KindJob, ns, name, "Deleted", "job deleted")); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cur)
	return nil
}

func (s *Server) scaleJob(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	var req api.ScaleRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	what := fmt.Sprintf("scale of job %q", name)
	if req.Count < 0 || req.Count > api.MaxCount {
		return fieldInvalid(what, "count", "must be between 0 and %d", api.MaxCount)
	}
	var want int64
	if req.ResourceVersion != "" {
		var err error
		if want, err = parseVersion(what, "resourceVersion", req.ResourceVersion); err != nil {
			return err
		}
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	s.catchUp(ctx, want)
	for range casAttempts {
		cur := s.reg.Snapshot().Jobs[registry.Key(ns, name)]
		if cur == nil {
			return jobNotFound(ns, name)
		}
		if want != 0 && cur.ResourceVersion != req.ResourceVersion {
			return staleJob(ns, name, cur.ResourceVersion, req.ResourceVersion)
		}
		gi, err := pickGroup(cur, req.Group)
		if err != nil {
			return err
		}
		from := cur.Spec.Groups[gi].Count
		if from == req.Count {
			writeJSON(w, http.StatusOK, cur)
			return nil
		}
		j := *cur
		j.Spec.Groups = slices.Clone(cur.Spec.Groups)
		j.Spec.Groups[gi].Count = req.Count
		_, err = s.reg.Commit(ctx, registry.Update(&j), s.event(api.KindJob, ns, name, "Scaled",
			"group %s scaled from %d to %d", j.Spec.Groups[gi].Name, from, req.Count))
		if errors.Is(err, registry.ErrConflict) || errors.Is(err, registry.ErrNotFound) {
			if want != 0 {
				return conflict("job %q in namespace %q changed since resourceVersion %s: get it again and retry", name, ns, req.ResourceVersion)
			}
			continue
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, &j)
		return nil
	}
	return conflict("job %q in namespace %q kept changing; try again", name, ns)
}

// pickGroup finds the group a scale request names; an empty name means the
// only group.
func pickGroup(j *api.Job, group string) (int, error) {
	names := make([]string, len(j.Spec.Groups))
	for i, g := range j.Spec.Groups {
		names[i] = g.Name
		if g.Name == group {
			return i, nil
		}
	}
	list := strings.Join(names, ", ")
	if group == "" {
		if len(names) == 1 {
			return 0, nil
		}
		return 0, fieldInvalid(fmt.Sprintf("scale of job %q", j.Name), "group", "is required: the job has groups %s", list)
	}
	return 0, fieldInvalid(fmt.Sprintf("scale of job %q", j.Name), "group", "job has no group %q; its groups are %s", group, list)
}
