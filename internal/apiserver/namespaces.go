package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

func (s *Server) listNamespaces(w http.ResponseWriter, r *http.Request) error {
	snap := s.reg.Snapshot()
	items := make([]api.Namespace, 0, len(snap.Namespaces)+1)
	for _, ns := range snap.Namespaces {
		items = append(items, *ns)
	}
	if snap.Namespaces[api.DefaultNamespace] == nil {
		// "default" always exists, stored or not.
		items = append(items, api.Namespace{Meta: api.Meta{Name: api.DefaultNamespace}})
	}
	slices.SortFunc(items, func(a, b api.Namespace) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, api.List[api.Namespace]{Items: items, ResourceVersion: formatRev(snap.Revision)})
	return nil
}

// putNamespace creates a namespace if it does not exist; an existing one is
// returned as it is.
func (s *Server) putNamespace(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("ns")
	var in api.Namespace // the body is optional
	if err := decodeBody(w, r, &in); err != nil && !errors.Is(err, errEmptyBody) {
		return err
	}
	if in.Name != "" && in.Name != name {
		return badRequest("metadata.name %q does not match the name %q in the path", in.Name, name)
	}
	if p := api.CheckName(name); p != "" {
		return fieldInvalid(fmt.Sprintf("namespace %q", name), "metadata.name", "%s", p)
	}
	if cur := s.reg.Snapshot().Namespaces[name]; cur != nil {
		writeJSON(w, http.StatusOK, cur)
		return nil
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	ns := &api.Namespace{Meta: api.Meta{Name: name, Labels: in.Labels, CreatedAt: s.clock.Now()}}
	_, err := s.reg.Commit(ctx, registry.Create(ns))
	if errors.Is(err, registry.ErrConflict) {
		if cur := s.reg.Snapshot().Namespaces[name]; cur != nil {
			writeJSON(w, http.StatusOK, cur)
			return nil
		}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, ns)
	return nil
}
