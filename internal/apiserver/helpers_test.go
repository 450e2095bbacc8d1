package apiserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
	"github.com/herd-project/herd/internal/registry/registrytest"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// env is an API server on a real registry on a herd store, served over a
// real socket, with a client.
type env struct {
	t       *testing.T
	reg     *registry.Registry
	store   *registrytest.Store
	srv     *Server
	url     string
	cli     *api.Client
	clock   *clockwork.FakeClock
	metrics *prometheus.Registry
}

type envOption func(*registry.Options, *Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	ro := registry.Options{}
	cfg := Config{
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		Clock:            clockwork.NewFakeClockAt(t0),
		BookmarkInterval: time.Second,
		Metrics:          prometheus.NewRegistry(),
	}
	for _, o := range opts {
		o(&ro, &cfg)
	}
	reg, st := registrytest.New(t, ro)
	cfg.Registry = reg
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	cli, err := api.NewClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, reg: reg, store: st, srv: srv, url: hs.URL, cli: cli,
		clock: cfg.Clock.(*clockwork.FakeClock), metrics: cfg.Metrics.(*prometheus.Registry)}
}

// ctx is bounded and ends before the test's servers close, so that streams
// opened with it end first.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// do sends a raw request and returns the status and body.
func (e *env) do(method, path, body string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(e.ctx(), method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// apiError decodes an error answer.
func apiError(t *testing.T, b []byte) *api.Error {
	t.Helper()
	e := &api.Error{}
	if err := json.Unmarshal(b, e); err != nil || e.Message == "" {
		t.Fatalf("answer is not an api.Error: %s", b)
	}
	return e
}

// wantError checks an error answer's status and reason, and that its
// message mentions each of words.
func wantError(t *testing.T, err error, status int, reason string, words ...string) *api.Error {
	t.Helper()
	ae, ok := err.(*api.Error)
	if !ok {
		t.Fatalf("error %v (%T), want an api.Error %d %s", err, err, status, reason)
	}
	if ae.Status != status || ae.Reason != reason {
		t.Fatalf("error %d %s %q, want %d %s", ae.Status, ae.Reason, ae.Message, status, reason)
	}
	for _, w := range words {
		if !strings.Contains(ae.Error(), w) {
			t.Fatalf("error %q does not mention %q", ae.Error(), w)
		}
	}
	return ae
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newJob(name string, groups ...string) *api.Job {
	if len(groups) == 0 {
		groups = []string{"web"}
	}
	j := &api.Job{Meta: api.Meta{Name: name}, Spec: api.JobSpec{Type: api.JobService}}
	for _, g := range groups {
		j.Spec.Groups = append(j.Spec.Groups, api.Group{
			Name: g, Count: 1,
			Tasks: []api.Task{{Name: "main", Config: api.TaskConfig{Command: "/bin/sleep", Args: []string{"60"}}}},
		})
	}
	return j
}

// seedAlloc stores an allocation directly, as the job controller would.
func (e *env) seedAlloc(ns, job, group string, index int, node string, tasks ...string) *api.Allocation {
	e.t.Helper()
	if len(tasks) == 0 {
		tasks = []string{"main"}
	}
	g := api.Group{Name: group, Count: 1}
	for _, task := range tasks {
		g.Tasks = append(g.Tasks, api.Task{Name: task, Driver: "exec", Config: api.TaskConfig{Command: "/bin/true"}})
	}
	a := &api.Allocation{
		Meta: api.Meta{Name: api.AllocName(job, group, index), Namespace: ns},
		Spec: api.AllocSpec{Job: job, Group: group, Index: index, GroupSpec: g, JobType: api.JobService,
			Node: node, DesiredStatus: api.DesiredRun},
		Status: api.AllocStatus{ClientStatus: api.ClientPending},
	}
	if _, err := e.reg.Commit(e.ctx(), registry.Create(a)); err != nil {
		e.t.Fatalf("seed allocation: %v", err)
	}
	return a
}

// commit writes through the registry, as a controller would.
func (e *env) commit(ops ...registry.Op) {
	e.t.Helper()
	if _, err := e.reg.Commit(e.ctx(), ops...); err != nil {
		e.t.Fatalf("commit: %v", err)
	}
}
