package apiserver

import (
	"net/http"
	"strings"

	"github.com/herd-project/herd/api"
)

// listEvents lists recent events, oldest first, filtered by the object's
// namespace, kind (any case) and name.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	ns, kind, name := q.Get("namespace"), q.Get("kind"), q.Get("name")
	events, rev := s.reg.EventList()
	items := make([]api.Event, 0, len(events))
	for _, ev := range events {
		if (ns == "" || ev.Namespace == ns) && (kind == "" || strings.EqualFold(ev.Kind, kind)) && (name == "" || ev.Name == name) {
			items = append(items, *ev)
		}
	}
	writeJSON(w, http.StatusOK, api.List[api.Event]{Items: items, ResourceVersion: formatRev(rev)})
	return nil
}
