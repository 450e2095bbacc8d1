package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

// fakeServer is an in-memory API server: allocations with resource
// versions, a replayable watch log filtered by node as the real server
// filters it, and the agent-facing endpoints.
type fakeServer struct {
	mu        sync.Mutex
	rev       int64
	compacted int64 // watches from an older version get 410
	allocs    map[string]api.Allocation
	log       []logEntry
	changed   chan struct{} // closed and replaced on every change
	streams   []*fakeStream

	nodes      map[string]api.Node
	registers  int
	heartbeats int
	reports    []api.AllocStatusReport
	watchFrom  []string

	// Hooks return an error to fail a call.
	reportHook    func(api.AllocStatusReport) error
	heartbeatHook func() error
	registerHook  func() error
}

type logEntry struct {
	rev      int64
	old, new *api.Allocation
	bookmark bool
}

func newFakeServer() *fakeServer {
	return &fakeServer{allocs: map[string]api.Allocation{}, nodes: map[string]api.Node{}, changed: make(chan struct{})}
}

func apiError(status int, format string, args ...any) error {
	return &api.Error{Status: status, Reason: http.StatusText(status), Message: fmt.Sprintf(format, args...)}
}

// appendLocked records a change and wakes the streams.
func (s *fakeServer) appendLocked(old, new *api.Allocation) {
	s.log = append(s.log, logEntry{rev: s.rev, old: old, new: new})
	close(s.changed)
	s.changed = make(chan struct{})
}

// put creates or replaces an allocation (as the controllers and the
// scheduler would).
func (s *fakeServer) put(a *api.Allocation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := allocKey(a)
	var old *api.Allocation
	if prev, ok := s.allocs[key]; ok {
		old = &prev
	}
	s.rev++
	c := *a
	c.ResourceVersion = strconv.FormatInt(s.rev, 10)
	s.allocs[key] = c
	s.appendLocked(old, &c)
}

// update changes a stored allocation.
func (s *fakeServer) update(key string, fn func(a *api.Allocation)) {
	s.mu.Lock()
	a, ok := s.allocs[key]
	s.mu.Unlock()
	if !ok {
		panic("no allocation " + key)
	}
	a.Status = copyStatus(a.Status)
	fn(&a)
	s.put(&a)
}

func (s *fakeServer) remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok := s.allocs[key]
	if !ok {
		return
	}
	delete(s.allocs, key)
	s.rev++
	s.appendLocked(&prev, nil)
}

func (s *fakeServer) get(key string) api.Allocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allocs[key]
}

// bookmark sends a BOOKMARK at a new revision.
func (s *fakeServer) bookmark() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.log = append(s.log, logEntry{rev: s.rev, bookmark: true})
	close(s.changed)
	s.changed = make(chan struct{})
	return strconv.FormatInt(s.rev, 10)
}

// streamsAt reports whether an open stream has delivered every event up to rev.
func (s *fakeServer) streamsAt(rev int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		if st.cursor >= rev && !isClosed(st.closed) {
			return true
		}
	}
	return false
}

// dropStreams ends every open watch, as a server restart would.
func (s *fakeServer) dropStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		st.closeOnce.Do(func() { close(st.closed) })
	}
	s.streams = nil
}

// compact makes every version up to now too old to watch from.
func (s *fakeServer) compact() {
	s.mu.Lock()
	s.rev++
	s.compacted = s.rev
	s.mu.Unlock()
}

func (s *fakeServer) RegisterNode(_ context.Context, n *api.Node) (*api.Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.registerHook != nil {
		if err := s.registerHook(); err != nil {
			return nil, err
		}
	}
	if err := n.Validate(); err != nil {
		return nil, apiError(http.StatusUnprocessableEntity, "%v", err)
	}
	s.registers++
	s.nodes[n.Name] = *n
	return n, nil
}

func (s *fakeServer) Heartbeat(_ context.Context, node string, _ api.Heartbeat) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.heartbeatHook != nil {
		if err := s.heartbeatHook(); err != nil {
			return err
		}
	}
	if _, ok := s.nodes[node]; !ok {
		return apiError(http.StatusNotFound, "node %s not found", node)
	}
	s.heartbeats++
	return nil
}

func (s *fakeServer) ListAllocs(_ context.Context, f api.AllocFilter) (*api.List[api.Allocation], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &api.List[api.Allocation]{ResourceVersion: strconv.FormatInt(s.rev, 10)}
	for _, a := range s.allocs {
		if f.Node == "" || a.Spec.Node == f.Node {
			out.Items = append(out.Items, a)
		}
	}
	return out, nil
}

func (s *fakeServer) WatchAllocs(ctx context.Context, node, resourceVersion string) (EventStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchFrom = append(s.watchFrom, resourceVersion)
	from, err := strconv.ParseInt(resourceVersion, 10, 64)
	if err != nil {
		return nil, apiError(http.StatusBadRequest, "bad resourceVersion %q", resourceVersion)
	}
	if from < s.compacted {
		return nil, apiError(http.StatusGone, "resourceVersion %d is too old", from)
	}
	st := &fakeStream{srv: s, ctx: ctx, node: node, cursor: from, closed: make(chan struct{})}
	s.streams = append(s.streams, st)
	return st, nil
}

func (s *fakeServer) ReportAllocStatus(_ context.Context, ns, name string, r api.AllocStatusReport) (*api.Allocation, error) {
	s.mu.Lock()
	hook := s.reportHook
	s.mu.Unlock()
	if hook != nil {
		if err := hook(r); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	key := ns + "/" + name
	a, ok := s.allocs[key]
	if !ok {
		s.mu.Unlock()
		return nil, apiError(http.StatusNotFound, "allocation %s not found", key)
	}
	if a.UID != r.UID || a.Spec.Node != r.Node {
		s.mu.Unlock()
		return nil, apiError(http.StatusConflict, "allocation %s is now %s on %q", key, a.UID, a.Spec.Node)
	}
	s.reports = append(s.reports, r)
	s.mu.Unlock()
	a.Status = copyStatus(r.Status)
	s.put(&a)
	return &a, nil
}

// reportsOf returns the reports accepted for an incarnation.
func (s *fakeServer) reportsOf(uid string) []api.AllocStatusReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.AllocStatusReport
	for _, r := range s.reports {
		if r.UID == uid {
			out = append(out, r)
		}
	}
	return out
}

func (s *fakeServer) node(name string) api.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodes[name]
}

func (s *fakeServer) counts() (registers, heartbeats int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registers, s.heartbeats
}

func (s *fakeServer) watches() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.watchFrom)
}

// fakeStream replays the server's log after its cursor, translated for a
// node filter: an allocation that stops matching is DELETED.
type fakeStream struct {
	srv       *fakeServer
	ctx       context.Context
	node      string
	cursor    int64
	closed    chan struct{}
	closeOnce sync.Once
}

func (st *fakeStream) Next() (api.WatchEvent, error) {
	for {
		st.srv.mu.Lock()
		select {
		case <-st.closed:
			st.srv.mu.Unlock()
			return api.WatchEvent{}, io.EOF
		default:
		}
		for _, e := range st.srv.log {
			if e.rev <= st.cursor {
				continue
			}
			st.cursor = e.rev
			if ev, ok := st.translate(e); ok {
				st.srv.mu.Unlock()
				return ev, nil
			}
		}
		changed := st.srv.changed
		st.srv.mu.Unlock()
		select {
		case <-changed:
		case <-st.closed:
			return api.WatchEvent{}, io.EOF
		case <-st.ctx.Done():
			return api.WatchEvent{}, st.ctx.Err()
		}
	}
}

func (st *fakeStream) translate(e logEntry) (api.WatchEvent, bool) {
	match := func(a *api.Allocation) bool { return a != nil && a.Spec.Node == st.node }
	rv := strconv.FormatInt(e.rev, 10)
	if e.bookmark {
		return api.WatchEvent{Type: api.Bookmark, ResourceVersion: rv}, true
	}
	var typ string
	obj := e.new
	switch {
	case match(e.old) && match(e.new):
		typ = api.Modified
	case match(e.new):
		typ = api.Added
	case match(e.old):
		typ = api.Deleted
		if obj == nil {
			obj = e.old
		}
	default:
		return api.WatchEvent{}, false
	}
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	return api.WatchEvent{Type: typ, ResourceVersion: rv, Object: b}, true
}

func (st *fakeStream) Close() error {
	st.closeOnce.Do(func() { close(st.closed) })
	return nil
}

// fakeDriver runs pretend tasks in memory. Tests end tasks with exit. It
// counts any attempt to start a task that is already running: the agent
// must never duplicate a process.
type fakeDriver struct {
	name  string
	clock clockwork.Clock
	fp    driver.Fingerprint

	mu         sync.Mutex
	tasks      map[driver.TaskID]*fakeTask
	starts     []startCall
	stops      []stopCall
	destroys   []driver.TaskID
	duplicates int
	nextPID    int
	// calls logs "start <id>", "stop <id>", "destroy <id>" in order.
	calls    []string
	startErr func(driver.StartRequest) error
	// fingerprints counts Fingerprint calls.
	fingerprints int
}

// portDriver is a fakeDriver that publishes ports: every task gets the
// same host ports, or portsErr.
type portDriver struct {
	*fakeDriver
	ports    map[string]int
	portsErr error
}

func (d *portDriver) Ports(_ context.Context, id driver.TaskID) (map[string]int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.tasks[id]; !ok {
		return nil, driver.ErrNotFound
	}
	if d.portsErr != nil {
		return nil, d.portsErr
	}
	return maps.Clone(d.ports), nil
}

type fakeTask struct {
	handle  driver.Handle
	running bool
	result  driver.ExitResult
	exited  chan struct{} // closed once result is set
}

func newFakeTask(h driver.Handle, running bool, res driver.ExitResult) *fakeTask {
	t := &fakeTask{handle: h, running: running, result: res, exited: make(chan struct{})}
	if !running {
		close(t.exited)
	}
	return t
}

type startCall struct {
	req driver.StartRequest
	at  time.Time
}

type stopCall struct {
	id      driver.TaskID
	timeout time.Duration
}

func newFakeDriver(name string, clock clockwork.Clock) *fakeDriver {
	return &fakeDriver{name: name, clock: clock, fp: driver.Fingerprint{Healthy: true}, tasks: map[driver.TaskID]*fakeTask{}, nextPID: 1000}
}

func (d *fakeDriver) Name() string { return d.name }

func (d *fakeDriver) Fingerprint(context.Context) driver.Fingerprint {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fingerprints++
	return d.fp
}

// setFingerprint changes what later fingerprints report.
func (d *fakeDriver) setFingerprint(fp driver.Fingerprint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fp = fp
}

func (d *fakeDriver) fingerprintCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fingerprints
}

func (d *fakeDriver) Start(_ context.Context, req driver.StartRequest) (*driver.Handle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.tasks[req.ID]; ok && t.running {
		d.duplicates++
		return nil, fmt.Errorf("task %s already runs", req.ID)
	}
	d.starts = append(d.starts, startCall{req: req, at: d.clock.Now()})
	d.calls = append(d.calls, "start "+req.ID.String())
	if d.startErr != nil {
		if err := d.startErr(req); err != nil {
			return nil, err
		}
	}
	d.nextPID++
	h := driver.Handle{ID: req.ID, Driver: d.name, PID: d.nextPID, StartedAt: d.clock.Now(), LogDir: req.LogDir}
	d.tasks[req.ID] = newFakeTask(h, true, driver.ExitResult{})
	return &h, nil
}

// Wait behaves as the exec driver's: the channel gets the exit and is
// closed, or is closed without a value when ctx ends.
func (d *fakeDriver) Wait(ctx context.Context, id driver.TaskID) (<-chan driver.ExitResult, error) {
	d.mu.Lock()
	t, ok := d.tasks[id]
	d.mu.Unlock()
	if !ok {
		return nil, driver.ErrNotFound
	}
	ch := make(chan driver.ExitResult, 1)
	go func() {
		defer close(ch)
		select {
		case <-t.exited:
			ch <- t.result
		case <-ctx.Done():
		}
	}()
	return ch, nil
}

func (d *fakeDriver) Stop(_ context.Context, id driver.TaskID, timeout time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stops = append(d.stops, stopCall{id: id, timeout: timeout})
	d.calls = append(d.calls, "stop "+id.String())
	t, ok := d.tasks[id]
	if !ok {
		return driver.ErrNotFound
	}
	d.exitLocked(t, driver.ExitResult{ExitCode: 143, Signal: "SIGTERM"})
	return nil
}

func (d *fakeDriver) Destroy(_ context.Context, id driver.TaskID) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tasks[id]
	if !ok {
		return driver.ErrNotFound
	}
	if t.running {
		return fmt.Errorf("task %s still runs", id)
	}
	delete(d.tasks, id)
	d.destroys = append(d.destroys, id)
	d.calls = append(d.calls, "destroy "+id.String())
	return nil
}

func (d *fakeDriver) Recover(context.Context) ([]*driver.Handle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*driver.Handle
	for _, t := range d.tasks {
		h := t.handle
		out = append(out, &h)
	}
	return out, nil
}

func (d *fakeDriver) exitLocked(t *fakeTask, res driver.ExitResult) {
	if !t.running {
		return
	}
	if res.FinishedAt.IsZero() {
		res.FinishedAt = d.clock.Now()
	}
	t.running, t.result = false, res
	close(t.exited)
}

// exit ends a running task.
func (d *fakeDriver) exit(id driver.TaskID, res driver.ExitResult) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tasks[id]
	if !ok || !t.running {
		return errors.New("task " + id.String() + " is not running")
	}
	d.exitLocked(t, res)
	return nil
}

// seed adds a task as an earlier agent process would have left it.
func (d *fakeDriver) seed(id driver.TaskID, running bool, res driver.ExitResult) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nextPID++
	d.tasks[id] = newFakeTask(driver.Handle{ID: id, Driver: d.name, PID: d.nextPID, StartedAt: d.clock.Now()}, running, res)
}

func (d *fakeDriver) running(id driver.TaskID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tasks[id]
	return ok && t.running
}

func (d *fakeDriver) known(id driver.TaskID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.tasks[id]
	return ok
}

func (d *fakeDriver) startsOf(id driver.TaskID) []startCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []startCall
	for _, s := range d.starts {
		if s.req.ID == id {
			out = append(out, s)
		}
	}
	return out
}

func (d *fakeDriver) stopsOf(id driver.TaskID) []stopCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []stopCall
	for _, s := range d.stops {
		if s.id == id {
			out = append(out, s)
		}
	}
	return out
}

func (d *fakeDriver) destroyed(id driver.TaskID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.destroys, id)
}

func (d *fakeDriver) callLog() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

func (d *fakeDriver) duplicateStarts() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.duplicates
}
