package apiserver

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

func TestJobLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()

	created, err := e.cli.CreateJob(ctx, newJob("web"))
	if err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	if created.ResourceVersion == "" || created.UID == "" || !created.CreatedAt.Equal(t0) ||
		created.Namespace != "default" || created.Spec.Priority != 50 || created.Spec.Groups[0].RestartPolicy == nil {
		t.Fatalf("created job not defaulted and versioned: %+v", created)
	}
	_, err = e.cli.CreateJob(ctx, newJob("web"))
	wantError(t, err, http.StatusConflict, api.ReasonAlreadyExists, `"web" already exists`)

	got, err := e.cli.GetJob(ctx, "default", "web")
	if err != nil || got.UID != created.UID || got.ResourceVersion != created.ResourceVersion {
		t.Fatalf("GetJob: %+v %v", got, err)
	}

	// PUT without a version overwrites the spec and keeps identity and status.
	upd := newJob("web")
	upd.Spec.Groups[0].Count = 3
	upd.Status.Phase = api.JobFailed // ignored: controllers own the status
	put, err := e.cli.PutJob(ctx, upd)
	if err != nil {
		t.Fatalf("PutJob: %v", err)
	}
	if put.UID != created.UID || !put.CreatedAt.Equal(created.CreatedAt) || put.ResourceVersion == created.ResourceVersion ||
		put.Spec.Groups[0].Count != 3 || put.Status.Phase != "" {
		t.Fatalf("put job %+v", put)
	}
	// The same spec again writes nothing.
	again, err := e.cli.PutJob(ctx, upd)
	if err != nil || again.ResourceVersion != put.ResourceVersion {
		t.Fatalf("idempotent put: %+v %v", again, err)
	}

	// A conditional PUT at a stale version conflicts; at the current one works.
	stale := newJob("web")
	stale.ResourceVersion = created.ResourceVersion
	_, err = e.cli.PutJob(ctx, stale)
	wantError(t, err, http.StatusConflict, api.ReasonConflict, "resourceVersion "+put.ResourceVersion, "not "+created.ResourceVersion)
	cond := newJob("web")
	cond.ResourceVersion = put.ResourceVersion
	cond.Spec.Priority = 80
	if got, err := e.cli.PutJob(ctx, cond); err != nil || got.Spec.Priority != 80 {
		t.Fatalf("conditional put: %+v %v", got, err)
	}
	// A conditional PUT of a missing job is 404.
	ghost := newJob("ghost")
	ghost.ResourceVersion = put.ResourceVersion
	_, err = e.cli.PutJob(ctx, ghost)
	wantError(t, err, http.StatusNotFound, api.ReasonNotFound, "ghost")

	// PUT of a new job creates it: 201.
	code, body := e.do("PUT", "/v1/namespaces/default/jobs/api", mustJSON(t, newJob("")))
	if code != http.StatusCreated {
		t.Fatalf("PUT of a new job: %d %s", code, body)
	}

	list, err := e.cli.ListJobs(ctx, "")
	if err != nil || len(list.Items) != 2 || list.Items[0].Name != "api" || list.Items[1].Name != "web" || list.ResourceVersion == "" {
		t.Fatalf("ListJobs: %+v %v", list, err)
	}
	if list, err := e.cli.ListJobs(ctx, "other"); err != nil || len(list.Items) != 0 {
		t.Fatalf("ListJobs(other): %+v %v", list, err)
	}

	if err := e.cli.DeleteJob(ctx, "default", "web"); err != nil {
		t.Fatalf("DeleteJob: %v", err)
	}
	_, err = e.cli.GetJob(ctx, "default", "web")
	wantError(t, err, http.StatusNotFound, api.ReasonNotFound, `job "web" not found`)
	wantError(t, e.cli.DeleteJob(ctx, "default", "web"), http.StatusNotFound, api.ReasonNotFound)

	// Every write recorded its event.
	evs, err := e.cli.ListEvents(ctx, api.EventFilter{Kind: "job", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, ev := range evs.Items {
		reasons = append(reasons, ev.Reason)
		if ev.Source != "apiserver" || ev.Namespace != "default" || !ev.Time.Equal(t0) {
			t.Errorf("event %+v", ev)
		}
	}
	if diff := cmp.Diff([]string{"Created", "Updated", "Updated", "Deleted"}, reasons); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

func TestJobRequestErrors(t *testing.T) {
	e := newEnv(t)
	valid := mustJSON(t, newJob("web"))
	tests := []struct {
		name, method, path, body string
		status                   int
		reason                   string
		mentions                 string
		fields                   []string
	}{
		{
			name: "invalid fields", method: "POST", path: "/v1/namespaces/default/jobs",
			body:   `{"metadata":{"name":"Bad_Name"},"spec":{"type":"cron","groups":[{"name":"web","count":-1,"tasks":[{"name":"main","config":{}}]}]}}`,
			status: 400, reason: api.ReasonInvalid, mentions: "is invalid",
			fields: []string{"metadata.name", "spec.type", "spec.groups[0].count", "spec.groups[0].tasks[0].config.command"},
		},
		{
			name: "no groups", method: "PUT", path: "/v1/namespaces/default/jobs/web",
			body:   `{"metadata":{"name":"web"},"spec":{"groups":[]}}`,
			status: 400, reason: api.ReasonInvalid, fields: []string{"spec.groups"},
		},
		{
			name: "duplicate ports", method: "POST", path: "/v1/namespaces/default/jobs",
			body: `{"metadata":{"name":"web"},"spec":{"groups":[{"name":"g","count":1,"tasks":[
				{"name":"a","config":{"command":"x"},"resources":{"ports":[{"name":"http","port":80}]}},
				{"name":"b","config":{"command":"x"},"resources":{"ports":[{"name":"http","port":80}]}}]}]}}`,
			status: 400, reason: api.ReasonInvalid, fields: []string{"spec.groups[0].tasks[1].resources.ports[0].port"},
		},
		{
			name: "unknown field", method: "POST", path: "/v1/namespaces/default/jobs",
			body:   `{"metadata":{"name":"web"},"spec":{"groups":[],"replicas":3}}`,
			status: 400, reason: api.ReasonBadRequest, mentions: `unknown field "replicas"`,
		},
		{
			name: "wrong type", method: "POST", path: "/v1/namespaces/default/jobs",
			body:   `{"metadata":{"name":"web"},"spec":{"groups":[{"name":"g","count":"three"}]}}`,
			status: 400, reason: api.ReasonBadRequest, mentions: "count",
		},
		{name: "empty body", method: "POST", path: "/v1/namespaces/default/jobs", status: 400, reason: api.ReasonBadRequest, mentions: "empty"},
		{name: "trailing data", method: "POST", path: "/v1/namespaces/default/jobs", body: valid + "{}", status: 400, reason: api.ReasonBadRequest, mentions: "after the JSON object"},
		{name: "name mismatch", method: "PUT", path: "/v1/namespaces/default/jobs/other", body: valid, status: 400, reason: api.ReasonBadRequest, mentions: `"web" does not match the name "other"`},
		{name: "namespace mismatch", method: "POST", path: "/v1/namespaces/team/jobs", body: strings.Replace(valid, `"name":"web"`, `"name":"web","namespace":"default"`, 1), status: 400, reason: api.ReasonBadRequest, mentions: "does not match the namespace"},
		{name: "missing namespace", method: "POST", path: "/v1/namespaces/team/jobs", body: valid, status: 404, reason: api.ReasonNotFound, mentions: `namespace "team" not found`},
		{name: "bad resource version", method: "PUT", path: "/v1/namespaces/default/jobs/web", body: strings.Replace(valid, `"name":"web"`, `"name":"web","resourceVersion":"x1"`, 1), status: 400, reason: api.ReasonInvalid, fields: []string{"metadata.resourceVersion"}},
		{name: "too large", method: "POST", path: "/v1/namespaces/default/jobs", body: `{"metadata":{"name":"` + strings.Repeat("x", MaxBodyBytes) + `"}}`, status: 413, reason: api.ReasonBadRequest, mentions: "larger than"},
		{name: "missing job", method: "GET", path: "/v1/namespaces/default/jobs/nope", status: 404, reason: api.ReasonNotFound},
		{name: "no such path", method: "GET", path: "/v1/nope", status: 404, reason: api.ReasonNotFound, mentions: "no such path"},
		{name: "wrong method", method: "PATCH", path: "/v1/namespaces/default/jobs/web", status: 405, reason: "MethodNotAllowed", mentions: "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.do(tt.method, tt.path, tt.body)
			ae := apiError(t, body)
			if code != tt.status || ae.Status != tt.status || ae.Reason != tt.reason {
				t.Fatalf("answer %d %s, want %d %s: %s", code, ae.Reason, tt.status, tt.reason, body)
			}
			if !strings.Contains(ae.Message, tt.mentions) {
				t.Fatalf("message %q does not mention %q", ae.Message, tt.mentions)
			}
			var fields []string
			for _, d := range ae.Details {
				fields = append(fields, d.Field)
				if d.Message == "" {
					t.Errorf("field %s without message", d.Field)
				}
			}
			if diff := cmp.Diff(tt.fields, fields); diff != "" {
				t.Fatalf("field errors (-want +got):\n%s\n%s", diff, body)
			}
		})
	}
	if list, err := e.cli.ListJobs(e.ctx(), ""); err != nil || len(list.Items) != 0 {
		t.Fatalf("a rejected request stored a job: %+v %v", list, err)
	}
}

func TestScaleJob(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()
	if _, err := e.cli.CreateJob(ctx, newJob("web")); err != nil {
		t.Fatal(err)
	}
	two, err := e.cli.CreateJob(ctx, newJob("two", "api", "db"))
	if err != nil {
		t.Fatal(err)
	}

	got, err := e.cli.ScaleJob(ctx, "default", "web", api.ScaleRequest{Count: 4})
	if err != nil || got.Spec.Groups[0].Count != 4 {
		t.Fatalf("scale of the only group: %+v %v", got, err)
	}
	if again, err := e.cli.ScaleJob(ctx, "default", "web", api.ScaleRequest{Count: 4}); err != nil || again.ResourceVersion != got.ResourceVersion {
		t.Fatalf("scale to the same count wrote: %+v %v", again, err)
	}
	_, err = e.cli.ScaleJob(ctx, "default", "two", api.ScaleRequest{Count: 2})
	ae := wantError(t, err, http.StatusBadRequest, api.ReasonInvalid, "api, db")
	if len(ae.Details) != 1 || ae.Details[0].Field != "group" {
		t.Fatalf("details %+v", ae.Details)
	}
	_, err = e.cli.ScaleJob(ctx, "default", "two", api.ScaleRequest{Group: "cache", Count: 2})
	wantError(t, err, http.StatusBadRequest, api.ReasonInvalid, `no group "cache"`, "api, db")
	_, err = e.cli.ScaleJob(ctx, "default", "two", api.ScaleRequest{Group: "db", Count: -1})
	wantError(t, err, http.StatusBadRequest, api.ReasonInvalid, "count: must be between 0 and 10000")
	_, err = e.cli.ScaleJob(ctx, "default", "nope", api.ScaleRequest{Count: 1})
	wantError(t, err, http.StatusNotFound, api.ReasonNotFound)

	db, err := e.cli.ScaleJob(ctx, "default", "two", api.ScaleRequest{Group: "db", Count: 0, ResourceVersion: two.ResourceVersion})
	if err != nil || db.Spec.Groups[1].Count != 0 || db.Spec.Groups[0].Count != 1 {
		t.Fatalf("conditional scale: %+v %v", db, err)
	}
	_, err = e.cli.ScaleJob(ctx, "default", "two", api.ScaleRequest{Group: "db", Count: 5, ResourceVersion: two.ResourceVersion})
	wantError(t, err, http.StatusConflict, api.ReasonConflict)

	evs, err := e.cli.ListEvents(ctx, api.EventFilter{Namespace: "default", Name: "two"})
	if err != nil || len(evs.Items) != 2 || evs.Items[1].Reason != "Scaled" || evs.Items[1].Message != "group db scaled from 1 to 0" {
		t.Fatalf("events %+v %v", evs, err)
	}
}

func TestNamespaces(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()
	list, err := e.cli.ListNamespaces(ctx)
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "default" {
		t.Fatalf("namespaces of a fresh store: %+v %v", list, err)
	}
	_, err = e.cli.CreateJob(ctx, &api.Job{Meta: api.Meta{Name: "web", Namespace: "team"}, Spec: newJob("web").Spec})
	wantError(t, err, http.StatusNotFound, api.ReasonNotFound, `namespace "team"`)

	code, body := e.do("PUT", "/v1/namespaces/team", "")
	if code != http.StatusCreated {
		t.Fatalf("PUT namespace: %d %s", code, body)
	}
	ns, err := e.cli.PutNamespace(ctx, "team") // exists: returned as it is
	if err != nil || ns.Name != "team" || ns.UID == "" || !ns.CreatedAt.Equal(t0) {
		t.Fatalf("PutNamespace: %+v %v", ns, err)
	}
	_, err = e.cli.PutNamespace(ctx, "Team!")
	wantError(t, err, http.StatusBadRequest, api.ReasonInvalid, "metadata.name")

	j := newJob("web")
	j.Namespace = "team"
	if _, err := e.cli.CreateJob(ctx, j); err != nil {
		t.Fatalf("job in the new namespace: %v", err)
	}
	list, err = e.cli.ListNamespaces(ctx)
	if err != nil || len(list.Items) != 2 || list.Items[0].Name != "default" || list.Items[1].Name != "team" {
		t.Fatalf("namespaces: %+v %v", list, err)
	}
	if jobs, err := e.cli.ListJobs(ctx, "team"); err != nil || len(jobs.Items) != 1 {
		t.Fatalf("jobs of team: %+v %v", jobs, err)
	}
}

func TestStoreDownIsUnavailable(t *testing.T) {
	e := newEnv(t, func(_ *registry.Options, c *Config) { c.StoreTimeout = 300 * time.Millisecond })
	if err := e.store.Server.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := e.cli.CreateJob(e.ctx(), newJob("web"))
	wantError(t, err, http.StatusServiceUnavailable, api.ReasonUnavailable, "store is unavailable")
	// Reads are served from the cache.
	if _, err := e.cli.ListJobs(e.ctx(), ""); err != nil {
		t.Fatalf("list with the store down: %v", err)
	}
}
