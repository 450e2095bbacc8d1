package apiserver

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// watchLine is a decoded watch event, for comparisons: type, name and
// what the test cares about of the object.
type watchLine struct {
	typ, name, rv string
	node          string
	obj           api.WatchEvent
}

// next reads the next event of w with a deadline.
func next(t *testing.T, w *api.Watcher) watchLine {
	t.Helper()
	type result struct {
		ev  api.WatchEvent
		err error
	}
	done := make(chan result, 1)
	go func() {
		ev, err := w.Next()
		done <- result{ev, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("watch: %v", r.err)
		}
		l := watchLine{typ: r.ev.Type, rv: r.ev.ResourceVersion, obj: r.ev}
		if r.ev.Type != api.Bookmark {
			var obj struct {
				api.Meta `json:"metadata"`
				Spec     struct {
					Node string `json:"node"`
				} `json:"spec"`
				Name string `json:"name"` // events
			}
			if err := r.ev.Decode(&obj); err != nil {
				t.Fatalf("event object: %v", err)
			}
			l.name, l.node = obj.Meta.Name, obj.Spec.Node
			if l.name == "" {
				l.name = obj.Name
			}
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	return watchLine{}
}

func expect(t *testing.T, w *api.Watcher, want ...string) []watchLine {
	t.Helper()
	var got []watchLine
	for _, wl := range want {
		l := next(t, w)
		got = append(got, l)
		s := l.typ
		if l.name != "" {
			s += " " + l.name
		}
		if s != wl {
			t.Fatalf("watch event %q (rv %s), want %q", s, l.rv, wl)
		}
	}
	return got
}

func TestWatchListThenChanges(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()
	for _, name := range []string{"b", "a"} {
		if _, err := e.cli.CreateJob(ctx, newJob(name)); err != nil {
			t.Fatal(err)
		}
	}
	list, err := e.cli.ListJobs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	w, err := e.cli.Watch(ctx, "jobs", api.WatchOptions{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Close()
	got := expect(t, w, "ADDED a", "ADDED b", "BOOKMARK")
	for _, l := range got {
		if l.rv != list.ResourceVersion {
			t.Fatalf("initial event at %s, want the list's revision %s", l.rv, list.ResourceVersion)
		}
	}

	if _, err := e.cli.CreateJob(ctx, newJob("c")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.ScaleJob(ctx, "default", "a", api.ScaleRequest{Count: 2}); err != nil {
		t.Fatal(err)
	}
	if err := e.cli.DeleteJob(ctx, "default", "b"); err != nil {
		t.Fatal(err)
	}
	live := expect(t, w, "ADDED c", "MODIFIED a", "DELETED b")

	// Resuming from the ADDED c event replays what followed it.
	w2, err := e.cli.Watch(ctx, "jobs", api.WatchOptions{ResourceVersion: live[0].rv})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	expect(t, w2, "MODIFIED a", "DELETED b")

	// A namespaced, named watch.
	w3, err := e.cli.Watch(ctx, "jobs", api.WatchOptions{Namespace: "default", Job: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer w3.Close()
	expect(t, w3, "ADDED a", "BOOKMARK")
}

func TestWatchTooOldIsGone(t *testing.T) {
	e := newEnv(t, func(o *registry.Options, _ *Config) { o.History = 2 })
	ctx := e.ctx()
	first, err := e.cli.CreateJob(ctx, newJob("a"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"b", "c", "d"} {
		if _, err := e.cli.CreateJob(ctx, newJob(name)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = e.cli.Watch(ctx, "jobs", api.WatchOptions{ResourceVersion: first.ResourceVersion})
	if !api.IsGone(err) {
		t.Fatalf("watch from an evicted version: %v", err)
	}
	wantError(t, err, http.StatusGone, api.ReasonGone, "list again")
}

func TestWatchRequestErrors(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct{ path, mentions string }{
		{"/v1/watch/pods", "want jobs, allocs, nodes or events"},
		{"/v1/watch/nodes?namespace=default", "cannot filter by namespace"},
		{"/v1/watch/jobs?node=n1", "cannot filter by node"},
		{"/v1/watch/jobs?resourceVersion=abc", `"abc"`},
	} {
		code, body := e.do("GET", tt.path, "")
		ae := apiError(t, body)
		if code != http.StatusBadRequest || !strings.Contains(ae.Message, tt.mentions) {
			t.Errorf("%s: %d %s", tt.path, code, ae.Message)
		}
	}
}

// TestWatchFilterTransitions follows an agent's view: a watch of one node's
// allocations sees an allocation arrive, change, leave and come back.
func TestWatchFilterTransitions(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()
	a := e.seedAlloc("default", "web", "web", 0, "")
	e.seedAlloc("default", "web", "web", 1, "n2")

	w, err := e.cli.Watch(ctx, "allocs", api.WatchOptions{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	expect(t, w, "BOOKMARK") // nothing on n1 yet

	move := func(node string, status api.ClientStatus) {
		t.Helper()
		cur := *e.reg.Snapshot().Allocs["default/"+a.Name]
		cur.Spec.Node, cur.Status.ClientStatus = node, status
		e.commit(registry.Update(&cur))
	}
	move("n1", api.ClientPending) // placed on n1: ADDED
	move("n1", api.ClientRunning) // still on n1: MODIFIED
	move("n3", api.ClientPending) // replaced elsewhere: DELETED, as it was on n1
	move("n1", api.ClientPending) // back: ADDED
	e.commit(registry.Delete(registry.Allocs, "default", a.Name, ""))
	got := expect(t, w, "ADDED web.web[0]", "MODIFIED web.web[0]", "DELETED web.web[0]", "ADDED web.web[0]", "DELETED web.web[0]")
	if got[2].node != "n1" {
		t.Fatalf("DELETED on leaving the filter carries node %q, want the last matching state (n1)", got[2].node)
	}
	var deleted api.Allocation
	if err := got[2].obj.Decode(&deleted); err != nil || deleted.ResourceVersion != got[2].rv {
		t.Fatalf("DELETED object at version %q, event at %q (%v)", deleted.ResourceVersion, got[2].rv, err)
	}
	// An allocation on another node never shows.
	other := *e.reg.Snapshot().Allocs["default/web.web[1]"]
	other.Status.ClientStatus = api.ClientRunning
	e.commit(registry.Update(&other))
	e.seedAlloc("default", "web", "web", 2, "n1")
	expect(t, w, "ADDED web.web[2]")
}

func TestWatchBookmarks(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()
	w, err := e.cli.Watch(ctx, "nodes", api.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	expect(t, w, "BOOKMARK")

	// A write of another kind moves the revision; the next bookmark
	// carries it.
	if _, err := e.cli.CreateJob(ctx, newJob("web")); err != nil {
		t.Fatal(err)
	}
	rev := e.reg.Revision()
	if err := e.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	l := expect(t, w, "BOOKMARK")[0]
	if got, _ := strconv.ParseInt(l.rv, 10, 64); got < rev {
		t.Fatalf("bookmark at %d, want at least %d", got, rev)
	}
}

func TestWatchEvents(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()
	if _, err := e.cli.CreateJob(ctx, newJob("web")); err != nil {
		t.Fatal(err)
	}
	w, err := e.cli.Watch(ctx, "events", api.WatchOptions{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	expect(t, w, "ADDED web", "BOOKMARK")
	if _, err := e.cli.ScaleJob(ctx, "default", "web", api.ScaleRequest{Count: 3}); err != nil {
		t.Fatal(err)
	}
	l := expect(t, w, "ADDED web")[0]
	var ev api.Event
	if err := l.obj.Decode(&ev); err != nil || ev.Reason != "Scaled" {
		t.Fatalf("event %+v %v", ev, err)
	}
}

// TestWatchEndsWithRequest checks that a watch handler returns when its
// client goes away.
func TestWatchEndsWithRequest(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(e.ctx())
	w, err := e.cli.Watch(ctx, "jobs", api.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, w, "BOOKMARK")
	cancel()
	_ = w.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.metricsText(), `route="GET /v1/watch/{kind}"`) {
		if time.Now().After(deadline) {
			t.Fatal("watch handler still running after its client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) metricsText() string {
	e.t.Helper()
	code, body := e.do("GET", "/metrics", "")
	if code != http.StatusOK {
		e.t.Fatalf("/metrics: %d", code)
	}
	return string(body)
}

func TestTranslate(t *testing.T) {
	on := func(node string) *api.Allocation {
		return &api.Allocation{Meta: api.Meta{Name: "a", Namespace: "default", ResourceVersion: "3"}, Spec: api.AllocSpec{Job: "web", Node: node}}
	}
	f := watchFilter{node: "n1"}
	tests := []struct {
		change   registry.Change
		wantType string
		wantNode string
	}{
		{registry.Change{Type: api.Added, Object: on("n1")}, api.Added, "n1"},
		{registry.Change{Type: api.Added, Object: on("n2")}, "", ""},
		{registry.Change{Type: api.Modified, Object: on("n1"), Prev: on("n1")}, api.Modified, "n1"},
		{registry.Change{Type: api.Modified, Object: on("n1"), Prev: on("")}, api.Added, "n1"},
		{registry.Change{Type: api.Modified, Object: on("n2"), Prev: on("n1")}, api.Deleted, "n1"},
		{registry.Change{Type: api.Modified, Object: on("n2"), Prev: on("n3")}, "", ""},
		{registry.Change{Type: api.Deleted, Object: on("n1"), Prev: on("n1")}, api.Deleted, "n1"},
		{registry.Change{Type: api.Deleted, Object: on("n2"), Prev: on("n2")}, "", ""},
	}
	for i, tt := range tests {
		tt.change.Revision = 9
		typ, obj, ok := translate(f, tt.change)
		if typ != tt.wantType || ok != (tt.wantType != "") {
			t.Errorf("%d: translate = %q %v, want %q", i, typ, ok, tt.wantType)
			continue
		}
		if !ok {
			continue
		}
		a := obj.(*api.Allocation)
		if a.Spec.Node != tt.wantNode {
			t.Errorf("%d: object on %q, want %q", i, a.Spec.Node, tt.wantNode)
		}
		if typ == api.Deleted && a.ResourceVersion != "9" {
			t.Errorf("%d: deleted object at version %s, want the change's 9", i, a.ResourceVersion)
		}
	}
	if (watchFilter{namespace: "x"}).matches(on("n1")) || !(watchFilter{job: "web"}).matches(on("")) {
		t.Error("namespace or job filter")
	}
}
