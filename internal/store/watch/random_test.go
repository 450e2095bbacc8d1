package watch

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// model is the expected key space and the history it went through.
type model struct {
	kvs     map[string]*mvccpb.KeyValue
	history []revEvents
}

// apply runs ops in one write transaction on the store and on the model.
func (m *model) apply(t *testing.T, e *env, ops []op) {
	t.Helper()
	w := e.st.Write()
	rev := w.Rev() + 1
	var evs []*mvccpb.Event
	for _, o := range ops {
		if o.put {
			if err := w.Put([]byte(o.key), []byte(o.val), 0); err != nil {
				t.Fatal(err)
			}
			kv := &mvccpb.KeyValue{Key: []byte(o.key), Value: []byte(o.val), CreateRevision: rev, ModRevision: rev, Version: 1}
			if old := m.kvs[o.key]; old != nil {
				kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
			}
			m.kvs[o.key] = kv
			evs = append(evs, &mvccpb.Event{Type: mvccpb.PUT, Kv: kv})
			continue
		}
		w.DeleteRange([]byte(o.key), []byte(o.end))
		for _, k := range keys {
			in := k == o.key
			if o.end != "" {
				in = k >= o.key && k < o.end
			}
			if in && m.kvs[k] != nil {
				delete(m.kvs, k)
				evs = append(evs, &mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(k), ModRevision: rev}})
			}
		}
	}
	if got := w.Rev(); (len(evs) > 0) != (got == rev) {
		t.Fatalf("store at revision %d, model has %d events for %d", got, len(evs), rev)
	}
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	if len(evs) > 0 {
		m.history = append(m.history, revEvents{rev, evs})
	}
}

type op struct {
	put           bool
	key, end, val string
}

var keys = func() []string {
	ks := make([]string, 10)
	for i := range ks {
		ks[i] = fmt.Sprintf("k%d", i)
	}
	return ks
}()

// spec is a watcher of the randomized test and what it received.
type spec struct {
	stream   int
	id       WatchID
	key, end string
	from     int64 // first revision it must see
	filter   Filter
	canceled bool

	got       []*mvccpb.Event
	compacted int64
	lastRev   int64
	errs      []string
}

func (sp *spec) wants(rev int64, ev *mvccpb.Event) bool {
	if rev < sp.from || (sp.filter != nil && sp.filter(ev)) {
		return false
	}
	k := string(ev.Kv.Key)
	switch sp.end {
	case "":
		return k == sp.key
	case "\x00":
		return k >= sp.key
	default:
		return k >= sp.key && k < sp.end
	}
}

// collector records the responses of one stream.
type collector struct {
	mu    sync.Mutex
	specs map[WatchID]*spec
}

func (c *collector) record(rs []Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rs {
		sp := c.specs[r.WatchID]
		if sp == nil {
			panic(fmt.Sprintf("response for unknown watcher %d", r.WatchID))
		}
		switch {
		case sp.compacted != 0:
			sp.errs = append(sp.errs, "response after compaction notice")
		case r.CompactRevision != 0:
			sp.compacted = r.CompactRevision
		case len(r.Events) == 0:
			sp.errs = append(sp.errs, "progress response nobody asked for")
		}
		for _, ev := range r.Events {
			if ev.Kv.ModRevision > r.Revision || ev.Kv.ModRevision < sp.lastRev {
				sp.errs = append(sp.errs, fmt.Sprintf("event at %d out of order (last %d, response %d)", ev.Kv.ModRevision, sp.lastRev, r.Revision))
			}
			sp.lastRev = ev.Kv.ModRevision
		}
		sp.got = append(sp.got, r.Events...)
	}
}

func TestRandomized(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runRandomized(t, seed) })
	}
}

func runRandomized(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 42))
	e := newEnv(t, Options{QueueLen: 3, ChunkRevs: 4, ChunkEvents: 6, SyncBatch: 5})
	m := &model{kvs: make(map[string]*mvccpb.KeyValue)}

	const nStreams, nWrites = 4, 150
	streams := make([]*Stream, nStreams)
	cols := make([]*collector, nStreams)
	permits := make([]chan struct{}, nStreams)
	release, finish := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for i := range streams {
		streams[i] = e.hub.NewStream()
		cols[i] = &collector{specs: make(map[WatchID]*spec)}
		permits[i] = make(chan struct{}, 1)
		slow := i%2 == 1
		wg.Add(1)
		go func(s *Stream, c *collector, permit chan struct{}) {
			defer wg.Done()
			for {
				if slow {
					// Reads only when the writer allows it, until released.
					select {
					case <-permit:
						c.record(s.Take())
					case <-release:
						slow = false
					}
					continue
				}
				select {
				case <-s.Ready():
					c.record(s.Take())
				case <-finish:
					c.record(s.Take())
					return
				}
			}
		}(streams[i], cols[i], permits[i])
	}

	var specs []*spec
	addWatcher := func() {
		i := rnd.IntN(nStreams)
		sp := &spec{stream: i}
		a, b := rnd.IntN(len(keys)), rnd.IntN(len(keys))
		sp.key = keys[min(a, b)]
		switch rnd.IntN(3) {
		case 1:
			sp.end = "\x00"
		case 2:
			if a != b {
				sp.end = keys[max(a, b)]
			}
		}
		switch rnd.IntN(5) {
		case 0:
			sp.filter = noPut
		case 1:
			sp.filter = noDelete
		}
		cur := e.st.Rev()
		start := int64(0)
		if rnd.IntN(3) > 0 {
			start = 1 + rnd.Int64N(cur+3)
		}
		sp.from = start
		if start == 0 {
			sp.from = cur + 1
		}
		var fs []Filter
		if sp.filter != nil {
			fs = append(fs, sp.filter)
		}
		// Registered under the collector's lock so that no response for it
		// can be recorded before it is known.
		c := cols[i]
		c.mu.Lock()
		id, err := streams[i].Watch(AutoWatchID, []byte(sp.key), []byte(sp.end), start, fs...)
		if err == nil {
			sp.id = id
			c.specs[id] = sp
			specs = append(specs, sp)
		}
		c.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}

	for range 10 {
		addWatcher()
	}
	compactAt := int64(0)
	for n := range nWrites {
		var ops []op
		switch r := rnd.IntN(10); {
		case r < 2:
			a, b := rnd.IntN(len(keys)), rnd.IntN(len(keys))
			o := op{key: keys[min(a, b)]}
			if a != b {
				o.end = keys[max(a, b)]
			}
			ops = []op{o}
		default:
			for _, k := range rnd.Perm(len(keys))[:1+rnd.IntN(3)] {
				ops = append(ops, op{put: rnd.IntN(4) > 0, key: keys[k], val: fmt.Sprint(n)})
			}
		}
		m.apply(t, e, ops)
		switch {
		case rnd.IntN(8) == 0:
			addWatcher()
		case rnd.IntN(25) == 0 && len(specs) > 0:
			sp := specs[rnd.IntN(len(specs))]
			if !sp.canceled {
				if err := streams[sp.stream].Cancel(sp.id); err != nil {
					t.Fatal(err)
				}
				sp.canceled = true
			}
		}
		if n == nWrites/2 {
			compactAt = e.st.Rev() - 20
			if _, err := e.st.Compact(compactAt); err != nil {
				t.Fatal(err)
			}
		}
		if n%5 == 0 {
			for _, p := range permits {
				select {
				case p <- struct{}{}:
				default:
				}
			}
		}
	}
	close(release)

	// Wait until every watcher is synced or has its compaction notice: then
	// everything it is owed has been queued.
	deadline := time.After(waitFor)
	for {
		pending := 0
		e.hub.mu.Lock()
		for _, sp := range specs {
			if w := streams[sp.stream].watchers[sp.id]; w != nil && w.state == stateUnsynced {
				pending++
			}
		}
		e.hub.mu.Unlock()
		if pending == 0 {
			break
		}
		select {
		case <-e.rounds:
		case <-deadline:
			t.Fatalf("%d watchers never caught up", pending)
		}
	}
	close(finish)
	wg.Wait()

	for _, sp := range specs {
		var want []*mvccpb.Event
		for _, re := range m.history {
			for _, ev := range re.events {
				if sp.wants(re.rev, ev) {
					want = append(want, ev)
				}
			}
		}
		name := fmt.Sprintf("watcher %d/%d [%q,%q) from %d", sp.stream, sp.id, sp.key, sp.end, sp.from)
		for _, err := range sp.errs {
			t.Errorf("%s: %s", name, err)
		}
		complete := !sp.canceled && sp.compacted == 0
		if sp.compacted != 0 {
			if sp.compacted != compactAt {
				t.Errorf("%s: compacted at %d, want %d", name, sp.compacted, compactAt)
			}
			if sp.lastRev >= compactAt {
				t.Errorf("%s: compaction notice after an event at %d", name, sp.lastRev)
			}
		}
		if len(sp.got) > len(want) || (complete && len(sp.got) != len(want)) {
			t.Errorf("%s: got %d events, want %d\ngot  %s\nwant %s", name, len(sp.got), len(want), fmtEvents(sp.got), fmtEvents(want))
			continue
		}
		for i, ev := range sp.got {
			if !proto.Equal(ev, want[i]) {
				t.Errorf("%s: event %d: got %s, want %s", name, i, fmtEvents(sp.got[i:i+1]), fmtEvents(want[i:i+1]))
				break
			}
		}
	}
	if t.Failed() {
		t.Logf("compacted at %d, final revision %d", compactAt, e.st.Rev())
	}
}
