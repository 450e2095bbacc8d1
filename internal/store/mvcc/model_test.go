package mvcc

import (
	"bytes"
	"fmt"
	"math/rand"
	"path/filepath"
	"sort"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// model is the obviously-correct reference: a full copy of the key space at
// every revision.
type model struct {
	states  []map[string]*mvccpb.KeyValue // index = revision
	events  map[int64][]*mvccpb.Event
	compact int64
}

func newModel() *model {
	return &model{states: []map[string]*mvccpb.KeyValue{nil, {}}, events: map[int64][]*mvccpb.Event{}}
}

func (m *model) rev() int64 { return int64(len(m.states) - 1) }

// apply runs one write transaction of puts (value != nil) and deletes.
func (m *model) apply(ops []modelOp) {
	cur := m.states[m.rev()]
	next := make(map[string]*mvccpb.KeyValue, len(cur))
	for k, v := range cur {
		next[k] = v
	}
	rev := m.rev() + 1
	var evs []*mvccpb.Event
	for _, op := range ops {
		if op.value == nil {
			for _, k := range sortedKeys(next) {
				if inRange(k, op.key, op.end) {
					delete(next, k)
					evs = append(evs, &mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(k), ModRevision: rev}})
				}
			}
			continue
		}
		kv := &mvccpb.KeyValue{Key: []byte(op.key), Value: op.value, ModRevision: rev, CreateRevision: rev, Version: 1}
		if old, ok := next[op.key]; ok {
			kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
		}
		next[op.key] = kv
		evs = append(evs, &mvccpb.Event{Type: mvccpb.PUT, Kv: kv})
	}
	if len(evs) == 0 {
		return
	}
	m.states = append(m.states, next)
	m.events[rev] = evs
}

type modelOp struct {
	key, end string
	value    []byte
}

func inRange(k, key, end string) bool {
	if end == "" {
		return k == key
	}
	if end == "\x00" {
		return k >= key
	}
	return k >= key && k < end
}

func sortedKeys(m map[string]*mvccpb.KeyValue) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (m *model) rangeAt(key, end string, rev int64) []*mvccpb.KeyValue {
	var out []*mvccpb.KeyValue
	st := m.states[rev]
	for _, k := range sortedKeys(st) {
		if inRange(k, key, end) {
			out = append(out, st[k])
		}
	}
	return out
}

func kvString(kvs []*mvccpb.KeyValue) string {
	var b bytes.Buffer
	for _, kv := range kvs {
		fmt.Fprintf(&b, "%s=%s c%d m%d v%d l%d; ", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
	}
	return b.String()
}

func eventsString(evs []*mvccpb.Event) string {
	var b bytes.Buffer
	for _, e := range evs {
		fmt.Fprintf(&b, "%v %s ", e.Type, kvString([]*mvccpb.KeyValue{e.Kv}))
	}
	return b.String()
}

// TestRandomAgainstModel drives the engine and the model with the same random
// operations (including compactions and restarts) and compares every read.
func TestRandomAgainstModel(t *testing.T) {
	for seed := int64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, seed, 600) })
	}
}

func runModel(t *testing.T, seed int64, steps int) {
	rng := rand.New(rand.NewSource(seed))
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	m := newModel()
	key := func() string { return string(rune('a' + rng.Intn(8))) }
	for step := 0; step < steps; step++ {
		switch p := rng.Intn(100); {
		case p < 50: // write transaction
			var ops []modelOp
			used := map[string]bool{}
			for n := 1 + rng.Intn(3); n > 0; n-- {
				k := key()
				if used[k] {
					continue
				}
				used[k] = true
				if rng.Intn(4) == 0 {
					ops = append(ops, modelOp{key: k})
				} else {
					ops = append(ops, modelOp{key: k, value: []byte(fmt.Sprint(step))})
				}
			}
			if rng.Intn(10) == 0 {
				ops = []modelOp{{key: key(), end: "\x00"}}
			}
			w := s.Write()
			for _, op := range ops {
				if op.value == nil {
					var end []byte
					if op.end != "" {
						end = []byte(op.end)
					}
					w.DeleteRange([]byte(op.key), end)
				} else if err := w.Put([]byte(op.key), op.value, 0); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.End(); err != nil {
				t.Fatal(err)
			}
			m.apply(ops)
			if s.Rev() != m.rev() {
				t.Fatalf("step %d: rev %d, model %d", step, s.Rev(), m.rev())
			}
		case p < 80: // read at a random revision
			rev := m.compact + rng.Int63n(m.rev()-m.compact+1)
			if rev == 0 {
				rev = 1
			}
			k, end := key(), ""
			if rng.Intn(2) == 0 {
				end = string(rune(k[0] + byte(rng.Intn(4))))
			}
			var endB []byte
			if end != "" {
				endB = []byte(end)
			}
			r := s.Read()
			res, err := r.Range([]byte(k), endB, RangeOptions{Rev: rev})
			r.End()
			if err != nil {
				t.Fatalf("step %d: range %q-%q@%d: %v", step, k, end, rev, err)
			}
			want := m.rangeAt(k, end, rev)
			if kvString(res.KVs) != kvString(want) || res.Count != int64(len(want)) {
				t.Fatalf("step %d: range %q-%q@%d\n got %s\nwant %s", step, k, end, rev, kvString(res.KVs), kvString(want))
			}
		case p < 88: // history
			from := m.compact + rng.Int63n(m.rev()-m.compact+1)
			if from == 0 {
				from = 1
			}
			var got, want []*mvccpb.Event
			err := s.Events(from, m.rev(), func(_ int64, evs []*mvccpb.Event) bool {
				got = append(got, evs...)
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			for r := from; r <= m.rev(); r++ {
				if r > m.compact {
					want = append(want, m.events[r]...)
				}
			}
			// Revisions at the compaction point may be partly kept; compare after it.
			got = dropUpTo(got, m.compact)
			if eventsString(got) != eventsString(want) {
				t.Fatalf("step %d: events from %d\n got %s\nwant %s", step, from, eventsString(got), eventsString(want))
			}
		case p < 94: // compact
			if m.rev() <= m.compact+1 {
				continue
			}
			rev := m.compact + 1 + rng.Int63n(m.rev()-m.compact)
			done, err := s.Compact(rev)
			if err != nil {
				t.Fatalf("compact %d: %v", rev, err)
			}
			<-done
			m.compact = rev
			if rev > 1 {
				r := s.Read()
				_, err := r.Range([]byte("a"), nil, RangeOptions{Rev: rev - 1})
				r.End()
				if err != ErrCompacted {
					t.Fatalf("read below compaction %d: %v", rev, err)
				}
			}
		default: // restart
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = Open(path, Options{NoSync: true}); err != nil {
				t.Fatal(err)
			}
			if s.Rev() != m.rev() || s.CompactRev() != m.compact {
				t.Fatalf("after restart rev %d/%d, model %d/%d", s.Rev(), s.CompactRev(), m.rev(), m.compact)
			}
		}
	}
}

func dropUpTo(evs []*mvccpb.Event, rev int64) []*mvccpb.Event {
	var out []*mvccpb.Event
	for _, e := range evs {
		if e.Kv.ModRevision > rev {
			out = append(out, e)
		}
	}
	return out
}
