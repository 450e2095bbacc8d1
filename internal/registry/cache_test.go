package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
)

func job(name string, rev int64) *api.Job {
	return &api.Job{Meta: api.Meta{Name: name, Namespace: "default", ResourceVersion: strconv.FormatInt(rev, 10)}}
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		key       string
		kind      Kind
		cacheKey  string
		ourPrefix bool
	}{
		{"/herd/jobs/default/web", Jobs, "default/web", true},
		{"/herd/allocs/ns/web.web[0]", Allocs, "ns/web.web[0]", true},
		{"/herd/nodes/n1.example", Nodes, "n1.example", true},
		{"/herd/heartbeats/n1", Heartbeats, "n1", true},
		{"/herd/events/00000000000000000001-abcd", Events, "00000000000000000001-abcd", true},
		{"/herd/namespaces/team", Namespaces, "team", true},
		{"/herd/jobs/default", "", "", false},
		{"/herd/jobs/default/", "", "", false},
		{"/herd/jobs//web", "", "", false},
		{"/herd/widgets/x", "", "", false},
		{"/herd/nodes/", "", "", false},
		{"/other/jobs/default/web", "", "", false},
	}
	for _, tt := range tests {
		kind, key, ok := parseKey("/herd/", tt.key)
		if kind != tt.kind || key != tt.cacheKey || ok != tt.ourPrefix {
			t.Errorf("parseKey(%q) = %q %q %v, want %q %q %v", tt.key, kind, key, ok, tt.kind, tt.cacheKey, tt.ourPrefix)
		}
	}
}

func TestEventNameSortsByTime(t *testing.T) {
	a := eventName(t0())
	b := eventName(t0().Add(1))
	if len(a) != 25 || !(a < b) {
		t.Fatalf("event names %q, %q", a, b)
	}
}

func TestHistory(t *testing.T) {
	h := newHistory(3, 10)
	if got := h.since(0); len(got) != 0 {
		t.Fatalf("empty history replays %v", got)
	}
	for rev := int64(11); rev <= 15; rev++ {
		h.add(Change{Kind: Jobs, Revision: rev})
	}
	if h.floor != 12 {
		t.Fatalf("floor %d after evicting 11 and 12, want 12", h.floor)
	}
	got := h.since(12)
	if len(got) != 3 || got[0].Revision != 13 || got[2].Revision != 15 {
		t.Fatalf("since(12) = %+v", got)
	}
	if got := h.since(14); len(got) != 1 || got[0].Revision != 15 {
		t.Fatalf("since(14) = %+v", got)
	}
	h.reset(20)
	if h.floor != 20 || len(h.since(0)) != 0 {
		t.Fatalf("after reset: floor %d, %d changes", h.floor, len(h.since(0)))
	}
}

func TestTableCopiesOnWriteAfterShare(t *testing.T) {
	tb := newTable[int]()
	tb.set("a", 1)
	shared := tb.share()
	tb.set("b", 2)
	tb.remove("a")
	if len(shared) != 1 || shared["a"] != 1 {
		t.Fatalf("shared map changed: %v", shared)
	}
	if _, ok := tb.get("a"); ok || tb.m["b"] != 2 {
		t.Fatalf("table %v", tb.m)
	}
}

func TestDiff(t *testing.T) {
	old := newCache(10)
	old.store(Jobs, "default/same", job("same", 5), 5)
	old.store(Jobs, "default/changed", job("changed", 6), 6)
	old.store(Jobs, "default/gone", job("gone", 7), 7)
	next := newCache(20)
	next.store(Jobs, "default/same", job("same", 5), 5)
	next.store(Jobs, "default/changed", job("changed", 15), 15)
	next.store(Jobs, "default/new", job("new", 16), 16)
	next.store(Heartbeats, "n1", &Heartbeat{AgentID: "a", Revision: 17}, 17)

	got := map[string]string{}
	for _, c := range old.diff(next) {
		if c.Revision != 20 {
			t.Errorf("change at %d, want the list's revision 20", c.Revision)
		}
		name := ""
		switch o := c.Object.(type) {
		case *api.Job:
			name = o.Name
		case *Heartbeat:
			name = "hb:" + o.AgentID
		}
		got[name] = c.Type
	}
	want := map[string]string{"changed": api.Modified, "gone": api.Deleted, "new": api.Added, "hb:a": api.Added}
	if len(got) != len(want) {
		t.Fatalf("diff %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("diff %v, want %v", got, want)
		}
	}
}

// TestReplace covers what a relist does to watchers, subscribers and the
// history, without a store.
func TestReplace(t *testing.T) {
	r := &Registry{
		log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		cache:     newCache(10),
		histories: map[Kind]*history{Jobs: newHistory(100, 10), Nodes: newHistory(100, 10)},
		advanced:  make(chan struct{}),
		watchers:  map[*watcher]struct{}{},
		subs:      map[*subscriber]struct{}{},
	}
	r.cache.store(Jobs, "default/gone", job("gone", 7), 7)
	ctx := context.Background()
	ch, err := r.Watch(ctx, Jobs, 0)
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := r.Subscribe(Nodes)
	advanced := r.advanced

	next := newCache(30)
	next.store(Jobs, "default/new", job("new", 25), 25)
	r.replace(next)

	for _, want := range []string{"new", "gone"} {
		c := <-ch
		if c.Object.(*api.Job).Name != want || c.Revision != 30 {
			t.Fatalf("change %+v, want %s at 30", c, want)
		}
	}
	select {
	case <-sub:
	default:
		t.Fatal("relist did not notify subscribers")
	}
	select {
	case <-advanced:
	default:
		t.Fatal("relist did not wake revision waiters")
	}
	if _, err := r.Watch(ctx, Jobs, 20); !errors.Is(err, ErrTooOld) {
		t.Fatalf("watch from inside the relist gap: %v", err)
	}
	if _, err := r.Watch(ctx, Jobs, 30); err != nil {
		t.Fatalf("watch from the list revision: %v", err)
	}
}

func t0() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
