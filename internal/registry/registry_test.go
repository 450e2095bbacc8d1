package registry_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
	"github.com/herd-project/herd/internal/registry/registrytest"
	"github.com/jonboulle/clockwork"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newJob(name string) *api.Job {
	j := &api.Job{
		Meta: api.Meta{Name: name},
		Spec: api.JobSpec{Groups: []api.Group{{
			Name: "web", Count: 1,
			Tasks: []api.Task{{Name: "main", Config: api.TaskConfig{Command: "/bin/true"}}},
		}}},
	}
	j.Defaults()
	return j
}

func mustCommit(t *testing.T, r *registry.Registry, ops ...registry.Op) int64 {
	t.Helper()
	rev, err := r.Commit(testCtx(t), ops...)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return rev
}

func TestCreateUpdateDelete(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	r, st := registrytest.New(t, registry.Options{Clock: clock})
	ctx := testCtx(t)

	j := newJob("web")
	j.Namespace = ""
	rev := mustCommit(t, r, registry.Create(j))
	if j.ResourceVersion != strconv.FormatInt(rev, 10) {
		t.Fatalf("ResourceVersion %q after commit at %d", j.ResourceVersion, rev)
	}
	if j.UID == "" || !j.CreatedAt.Equal(t0) || j.Namespace != api.DefaultNamespace {
		t.Fatalf("Create did not fill uid/createdAt/namespace: %+v", j.Meta)
	}
	// The cache holds the write as soon as Commit returns.
	snap := r.Snapshot()
	got := snap.Jobs[registry.Key("default", "web")]
	if got == nil || got.ResourceVersion != j.ResourceVersion || got.UID != j.UID {
		t.Fatalf("snapshot after create: %+v", got)
	}
	if snap.Revision < rev {
		t.Fatalf("snapshot revision %d < commit revision %d", snap.Revision, rev)
	}
	// The resource version is not part of the stored value.
	raw, err := st.Client.Get(ctx, "/herd/jobs/default/web")
	if err != nil || len(raw.Kvs) != 1 {
		t.Fatalf("raw get: %v %v", raw, err)
	}
	if strings.Contains(string(raw.Kvs[0].Value), "resourceVersion") {
		t.Fatalf("stored value carries its resource version: %s", raw.Kvs[0].Value)
	}

	// Create again: already exists, which is a conflict.
	_, err = r.Commit(ctx, registry.Create(newJob("web")))
	if !errors.Is(err, registry.ErrAlreadyExists) || !errors.Is(err, registry.ErrConflict) || !strings.Contains(err.Error(), "jobs/default/web") {
		t.Fatalf("second create: %v", err)
	}

	// Update at the current version succeeds; at the old one it conflicts.
	stale := j.ResourceVersion
	upd := *j
	upd.Spec.Priority = 70
	rev2 := mustCommit(t, r, registry.Update(&upd))
	if rev2 <= rev || r.Snapshot().Jobs["default/web"].Spec.Priority != 70 {
		t.Fatalf("update not visible")
	}
	upd2 := *j
	upd2.ResourceVersion = stale
	_, err = r.Commit(ctx, registry.Update(&upd2))
	if !errors.Is(err, registry.ErrConflict) || errors.Is(err, registry.ErrAlreadyExists) ||
		!strings.Contains(err.Error(), "jobs/default/web") {
		t.Fatalf("stale update: %v", err)
	}
	if upd2.ResourceVersion != stale {
		t.Fatalf("failed update changed the object's version to %q", upd2.ResourceVersion)
	}

	// Update of a missing object: not found.
	ghost := newJob("ghost")
	ghost.ResourceVersion = "5"
	if _, err := r.Commit(ctx, registry.Update(ghost)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("update of missing: %v", err)
	}
	// An update needs a numeric resource version.
	bad := newJob("web")
	bad.ResourceVersion = "abc"
	if _, err := r.Commit(ctx, registry.Update(bad)); err == nil || !strings.Contains(err.Error(), "abc") {
		t.Fatalf("update with bad version: %v", err)
	}

	// Conditional delete at a stale version conflicts; at the current one works.
	if _, err := r.Commit(ctx, registry.Delete(registry.Jobs, "default", "web", stale)); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("stale delete: %v", err)
	}
	mustCommit(t, r, registry.Delete(registry.Jobs, "default", "web", upd.ResourceVersion))
	if _, ok := r.Snapshot().Jobs["default/web"]; ok {
		t.Fatal("deleted job still cached")
	}
	if _, err := r.Commit(ctx, registry.Delete(registry.Jobs, "default", "web", upd.ResourceVersion)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("conditional delete of missing: %v", err)
	}
	// An unconditional delete of a missing key is no error.
	mustCommit(t, r, registry.Delete(registry.Jobs, "default", "web", ""))
}

func TestUpsertKindsAndHeartbeats(t *testing.T) {
	r, _ := registrytest.New(t, registry.Options{})
	n := &api.Node{Meta: api.Meta{Name: "n1.example"}, Spec: api.NodeSpec{Availability: api.Active}}
	ns := &api.Namespace{Meta: api.Meta{Name: "team"}}
	a := &api.Allocation{Meta: api.Meta{Name: api.AllocName("web", "web", 0), Namespace: "team"}, Spec: api.AllocSpec{Job: "web", Group: "web"}}
	rev := mustCommit(t, r, registry.Upsert(n), registry.Create(ns), registry.Create(a),
		registry.PutHeartbeat("n1.example", registry.Heartbeat{AgentID: "a1", Time: t0}))
	snap := r.Snapshot()
	if snap.Nodes["n1.example"] == nil || snap.Namespaces["team"] == nil || snap.Allocs["team/web.web[0]"] == nil {
		t.Fatalf("snapshot misses objects: %+v", snap)
	}
	hb := snap.Heartbeats["n1.example"]
	if hb.AgentID != "a1" || !hb.Time.Equal(t0) || hb.Revision != rev {
		t.Fatalf("heartbeat %+v, want revision %d", hb, rev)
	}
	// Upsert needs no version and ignores a stale one.
	n2 := *snap.Nodes["n1.example"]
	n2.Spec.Availability = api.Drain
	n2.ResourceVersion = "1"
	mustCommit(t, r, registry.Upsert(&n2))
	if r.Snapshot().Nodes["n1.example"].Spec.Availability != api.Drain {
		t.Fatal("upsert not applied")
	}
}

func TestCommitIsAtomic(t *testing.T) {
	r, st := registrytest.New(t, registry.Options{})
	ctx := testCtx(t)
	mustCommit(t, r, registry.Create(newJob("taken")))
	_, err := r.Commit(ctx, registry.Create(newJob("fresh")), registry.Create(newJob("taken")),
		registry.RecordEvent(api.Event{Reason: "Created"}))
	if !errors.Is(err, registry.ErrAlreadyExists) || !strings.Contains(err.Error(), "jobs/default/taken") {
		t.Fatalf("batch with a taken name: %v", err)
	}
	resp, err := st.Client.Get(ctx, "/herd/jobs/default/fresh")
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("part of a failed batch was written: %v %v", resp.Kvs, err)
	}
	if evs := r.Events(); len(evs) != 0 {
		t.Fatalf("event of a failed batch was written: %v", evs)
	}
}

func TestCommitRejectsBadOps(t *testing.T) {
	r, _ := registrytest.New(t, registry.Options{})
	ctx := testCtx(t)
	many := make([]registry.Op, registry.MaxOps+1)
	for i := range many {
		many[i] = registry.Upsert(&api.Node{Meta: api.Meta{Name: fmt.Sprintf("n%d", i)}})
	}
	tests := []struct {
		name string
		ops  []registry.Op
		want string
	}{
		{"none", nil, "no operations"},
		{"too many", many, "at most 100"},
		{"duplicate key", []registry.Op{registry.Create(newJob("a")), registry.Upsert(newJob("a"))}, "written twice"},
		{"no name", []registry.Op{registry.Create(&api.Namespace{})}, "name is empty"},
		{"slash in name", []registry.Op{registry.Create(newJob("a/b"))}, "contains '/'"},
		{"nil object", []registry.Op{registry.Create((*api.Job)(nil))}, "cannot store"},
		{"wrong kind", []registry.Op{{Type: registry.OpUpsert, Kind: registry.Nodes, Object: newJob("a")}}, "cannot be stored as"},
		{"unknown kind delete", []registry.Op{registry.Delete("widgets", "", "a", "")}, "unknown kind"},
		{"unknown op", []registry.Op{{Type: 42, Kind: registry.Jobs, Name: "a"}}, "unknown operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Commit(ctx, tt.ops...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestSnapshotIsStable(t *testing.T) {
	r, _ := registrytest.New(t, registry.Options{})
	mustCommit(t, r, registry.Create(newJob("a")))
	before := r.Snapshot()
	mustCommit(t, r, registry.Create(newJob("b")), registry.Delete(registry.Jobs, "default", "a", ""))
	if len(before.Jobs) != 1 || before.Jobs["default/a"] == nil {
		t.Fatalf("an older snapshot changed: %v", before.Jobs)
	}
	after := r.Snapshot()
	if len(after.Jobs) != 1 || after.Jobs["default/b"] == nil || after.Revision <= before.Revision {
		t.Fatalf("new snapshot: rev %d jobs %v", after.Revision, after.Jobs)
	}
}

func TestEventsOldestFirst(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	r, _ := registrytest.New(t, registry.Options{Clock: clock})
	mustCommit(t, r, registry.RecordEvent(api.Event{Time: t0.Add(2 * time.Second), Reason: "third"}),
		registry.RecordEvent(api.Event{Time: t0.Add(time.Second), Reason: "second"}))
	mustCommit(t, r, registry.RecordEvent(api.Event{Reason: "first"})) // time from the clock: t0
	// Events of the same time are in the order they were stored.
	for _, reason := range []string{"a", "b", "c", "d", "e", "f"} {
		mustCommit(t, r, registry.RecordEvent(api.Event{Time: t0.Add(3 * time.Second), Reason: reason}))
	}
	var got []string
	for _, ev := range r.Events() {
		got = append(got, ev.Reason)
	}
	if strings.Join(got, ",") != "first,second,third,a,b,c,d,e,f" {
		t.Fatalf("events in order %v", got)
	}
	evs, rev := r.EventList()
	if len(evs) != 9 || rev != r.Revision() {
		t.Fatalf("EventList: %d events at %d, registry at %d", len(evs), rev, r.Revision())
	}
	// Many events of one nanosecond, in one commit and in several, all
	// get names of their own.
	same := make([]registry.Op, registry.MaxOps)
	for i := range same {
		same[i] = registry.RecordEvent(api.Event{Time: t0.Add(time.Hour), Reason: "same"})
	}
	for range 3 {
		mustCommit(t, r, same...)
	}
	if n := len(r.Events()); n != 9+3*registry.MaxOps {
		t.Fatalf("%d events after recording %d", n, 9+3*registry.MaxOps)
	}
	// Events are deleted by name; names start with the time.
	names := r.EventNames()
	if len(names) != 9+3*registry.MaxOps || !strings.HasPrefix(names[0], fmt.Sprintf("%020d-", t0.UnixNano())) {
		t.Fatalf("event names %v", names)
	}
	mustCommit(t, r, registry.Delete(registry.Events, "", names[0], ""))
	if evs := r.Events(); len(evs) != 8+3*registry.MaxOps || evs[0].Reason != "second" {
		t.Fatalf("after deleting the oldest event: %v", evs)
	}
}

// recv reads one change or fails after a deadline.
func recv(t *testing.T, ch <-chan registry.Change) registry.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change within 10s")
	}
	return registry.Change{}
}

func TestWatchReplayAndLive(t *testing.T) {
	r, _ := registrytest.New(t, registry.Options{})
	ctx := testCtx(t)
	start := mustCommit(t, r, registry.Create(newJob("before")))
	j := newJob("web")
	revAdd := mustCommit(t, r, registry.Create(j))
	mustCommit(t, r, registry.Upsert(&api.Node{Meta: api.Meta{Name: "n1"}})) // another kind
	upd := *j
	upd.Spec.Priority = 90
	revMod := mustCommit(t, r, registry.Update(&upd))

	ch, err := r.Watch(ctx, registry.Jobs, start)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	c := recv(t, ch)
	if c.Type != api.Added || c.Revision != revAdd || c.Object.(*api.Job).Name != "web" || c.Prev != nil {
		t.Fatalf("first replayed change %+v", c)
	}
	c = recv(t, ch)
	if c.Type != api.Modified || c.Revision != revMod || c.Object.(*api.Job).Spec.Priority != 90 ||
		c.Prev.(*api.Job).Spec.Priority != 50 {
		t.Fatalf("second replayed change %+v", c)
	}
	// Live changes follow.
	revDel := mustCommit(t, r, registry.Delete(registry.Jobs, "default", "web", ""))
	c = recv(t, ch)
	if c.Type != api.Deleted || c.Revision != revDel || c.Object.(*api.Job).Spec.Priority != 90 {
		t.Fatalf("live delete %+v", c)
	}

	// from = 0 watches from now; heartbeats carry their revision.
	hbs, err := r.Watch(ctx, registry.Heartbeats, 0)
	if err != nil {
		t.Fatal(err)
	}
	revHB := mustCommit(t, r, registry.PutHeartbeat("n1", registry.Heartbeat{AgentID: "x"}))
	c = recv(t, hbs)
	if hb := c.Object.(*registry.Heartbeat); c.Type != api.Added || hb.AgentID != "x" || hb.Revision != revHB {
		t.Fatalf("heartbeat change %+v", c)
	}
}

func TestWatchEndsWithContext(t *testing.T) {
	r, _ := registrytest.New(t, registry.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := r.Watch(ctx, registry.Jobs, 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("change on an idle watch")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch channel not closed after its context ended")
	}
}

func TestWatchTooOld(t *testing.T) {
	r, _ := registrytest.New(t, registry.Options{History: 3})
	ctx := testCtx(t)
	first := mustCommit(t, r, registry.Create(newJob("j0")))
	for i := 1; i <= 4; i++ {
		mustCommit(t, r, registry.Create(newJob(fmt.Sprintf("j%d", i))))
	}
	if _, err := r.Watch(ctx, registry.Jobs, first); !errors.Is(err, registry.ErrTooOld) {
		t.Fatalf("watch from an evicted revision: %v", err)
	}
	// The ring holds the changes of j2, j3 and j4: a watch from j2's
	// revision replays j3 and j4.
	ch, err := r.Watch(ctx, registry.Jobs, first+2)
	if err != nil {
		t.Fatalf("watch within history: %v", err)
	}
	for _, want := range []string{"j3", "j4"} {
		if c := recv(t, ch); c.Object.(*api.Job).Name != want {
			t.Fatalf("replayed %s, want %s", c.Object.(*api.Job).Name, want)
		}
	}
	if _, err := r.Watch(ctx, "widgets", 0); err == nil {
		t.Fatal("watch of an unknown kind accepted")
	}

	// Each kind keeps its own history: heartbeats do not push out jobs.
	for i := 0; i < 10; i++ {
		mustCommit(t, r, registry.PutHeartbeat("n1", registry.Heartbeat{AgentID: strconv.Itoa(i)}))
	}
	ch, err = r.Watch(ctx, registry.Jobs, first+2)
	if err != nil {
		t.Fatalf("jobs watch after many heartbeats: %v", err)
	}
	if c := recv(t, ch); c.Object.(*api.Job).Name != "j3" {
		t.Fatalf("replayed %+v", c)
	}
}

func TestSlowWatcherIsClosed(t *testing.T) {
	r, _ := registrytest.New(t, registry.Options{})
	ch, err := r.Watch(testCtx(t), registry.Heartbeats, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads ch; write more changes than its buffer holds.
	for batch := 0; batch < 12; batch++ {
		ops := make([]registry.Op, registry.MaxOps)
		for i := range ops {
			ops[i] = registry.PutHeartbeat(fmt.Sprintf("n%d", i), registry.Heartbeat{AgentID: strconv.Itoa(batch)})
		}
		mustCommit(t, r, ops...)
	}
	n := 0
	for range ch {
		n++
	}
	if n == 0 || n >= 1200 {
		t.Fatalf("slow watcher got %d changes before its channel closed", n)
	}
}

func TestSubscribeCoalesces(t *testing.T) {
	r, _ := registrytest.New(t, registry.Options{})
	jobs, cancel := r.Subscribe(registry.Jobs, registry.Allocs)
	defer cancel()
	mustCommit(t, r, registry.Create(newJob("a")))
	mustCommit(t, r, registry.Create(newJob("b")))
	mustCommit(t, r, registry.Create(newJob("c")))
	select {
	case <-jobs:
	default:
		t.Fatal("no notification after commits")
	}
	select {
	case <-jobs:
		t.Fatal("notifications were not coalesced")
	default:
	}
	// Other kinds do not wake the subscriber.
	mustCommit(t, r, registry.Upsert(&api.Node{Meta: api.Meta{Name: "n1"}}))
	select {
	case <-jobs:
		t.Fatal("woken by a node change")
	default:
	}
	// A cancelled subscription gets nothing more.
	cancel()
	mustCommit(t, r, registry.Create(newJob("d")))
	select {
	case <-jobs:
		t.Fatal("woken after cancel")
	default:
	}
}

func TestWaitRevisionOutsidePrefix(t *testing.T) {
	r, st := registrytest.New(t, registry.Options{})
	ctx := testCtx(t)
	resp, err := st.Client.Put(ctx, "/elsewhere/key", "v")
	if err != nil {
		t.Fatal(err)
	}
	// The watch sees nothing of this write; a progress notification moves
	// the cache past it.
	if err := r.WaitRevision(ctx, resp.Header.Revision); err != nil {
		t.Fatalf("WaitRevision: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := r.WaitRevision(short, resp.Header.Revision+100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitRevision of a future revision: %v", err)
	}
}

func TestListsManyKeysAndSurvivesRestart(t *testing.T) {
	st := registrytest.StartStore(t)
	r := registrytest.Open(t, st.Client, registry.Options{})
	for batch := 0; batch < 15; batch++ {
		ops := make([]registry.Op, registry.MaxOps)
		for i := range ops {
			ops[i] = registry.Upsert(&api.Node{Meta: api.Meta{Name: fmt.Sprintf("n%d-%d", batch, i)}})
		}
		mustCommit(t, r, ops...)
	}
	j := newJob("web")
	mustCommit(t, r, registry.Create(j), registry.RecordEvent(api.Event{Reason: "Created"}))
	// Something outside the prefix, and something inside that is not ours,
	// are ignored.
	ctx := testCtx(t)
	if _, err := st.Client.Put(ctx, "/herd/widgets/x", "{}"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Client.Put(ctx, "/herd/jobs/default/broken", "not json"); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Commit(ctx, registry.Create(newJob("late"))); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Commit on a closed registry: %v", err)
	}
	if _, err := r.Watch(ctx, registry.Jobs, 0); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Watch after Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st2 := registrytest.StartStoreIn(t, st.DataDir)
	r2 := registrytest.Open(t, st2.Client, registry.Options{})
	snap := r2.Snapshot()
	if len(snap.Nodes) != 1500 {
		t.Fatalf("%d nodes after restart, want 1500", len(snap.Nodes))
	}
	got := snap.Jobs["default/web"]
	if got == nil || got.UID != j.UID || got.ResourceVersion != j.ResourceVersion {
		t.Fatalf("job after restart %+v, want uid %s version %s", got, j.UID, j.ResourceVersion)
	}
	if _, ok := snap.Jobs["default/broken"]; ok {
		t.Fatal("undecodable value was cached")
	}
	if len(r2.Events()) != 1 {
		t.Fatalf("events after restart: %v", r2.Events())
	}
}

func TestCustomPrefix(t *testing.T) {
	st := registrytest.StartStore(t)
	r := registrytest.Open(t, st.Client, registry.Options{Prefix: "/other"})
	mustCommit(t, r, registry.Create(newJob("web")))
	resp, err := st.Client.Get(testCtx(t), "/other/jobs/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != "/other/jobs/default/web" {
		t.Fatalf("keys under /other/: %v %v", resp.Kvs, err)
	}
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRecoversAfterStoreRestartAndCompaction restarts the store under a
// running registry and compacts away the revisions its watch would resume
// from: the registry lists again and its cache converges.
func TestRecoversAfterStoreRestartAndCompaction(t *testing.T) {
	st := registrytest.StartStore(t)
	url := st.Server.ClientURLs()[0]
	r := registrytest.Open(t, st.Client, registry.Options{})
	mustCommit(t, r, registry.Create(newJob("old")))
	sub, cancel := r.Subscribe(registry.Jobs)
	defer cancel()

	if err := st.Server.Close(); err != nil {
		t.Fatal(err)
	}
	st2 := registrytest.StartStoreOn(t, st.DataDir, url)
	ctx := testCtx(t)
	if _, err := st2.Client.Delete(ctx, "/herd/jobs/default/old"); err != nil {
		t.Fatal(err)
	}
	resp, err := st2.Client.Put(ctx, "/herd/jobs/default/new", `{"metadata":{"name":"new","namespace":"default"}}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st2.Client.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the cache to show the changes made while the watch was away", func() bool {
		jobs := r.Snapshot().Jobs
		return len(jobs) == 1 && jobs["default/new"] != nil
	})
	select {
	case <-sub:
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber not told of the changes")
	}
	// Writes work again through the original client.
	mustCommit(t, r, registry.Create(newJob("after")))
}

// TestConflictCatchesUp checks that after a conflict the cache shows the
// write that won, so that a retry from a fresh snapshot can succeed.
func TestConflictCatchesUp(t *testing.T) {
	r, st := registrytest.New(t, registry.Options{})
	ctx := testCtx(t)
	for i := 0; i < 20; i++ {
		j := newJob(fmt.Sprintf("j%d", i))
		mustCommit(t, r, registry.Create(j))
		// Another writer (not through this registry) changes the job.
		resp, err := st.Client.Put(ctx, "/herd/jobs/default/"+j.Name, `{"metadata":{"name":"`+j.Name+`"},"spec":{"priority":99}}`)
		if err != nil {
			t.Fatal(err)
		}
		stale := *j
		if _, err := r.Commit(ctx, registry.Update(&stale)); !errors.Is(err, registry.ErrConflict) {
			t.Fatalf("update over another writer's change: %v", err)
		}
		got := r.Snapshot().Jobs["default/"+j.Name]
		if got.ResourceVersion != strconv.FormatInt(resp.Header.Revision, 10) || got.Spec.Priority != 99 {
			t.Fatalf("after the conflict the cache holds %+v, want the write at %d", got, resp.Header.Revision)
		}
	}
}
