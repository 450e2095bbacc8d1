package conformance

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// TestConcurrentHistory runs the same kind of concurrent workload on each
// system (kube-apiserver style: blind puts and deletes, and optimistic
// read-compare-write transactions from several clients at once). The
// interleaving differs between the systems, so the responses cannot be
// compared; instead each system's history must be self-consistent: its
// watch stream, its historic reads and its write responses must tell the
// same story. The reference must pass these checks; the system under test
// is reported if it does not.
func TestConcurrentHistory(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	var problems [2][]string
	streams := map[*target][3]*watchStream{}
	for _, tg := range []*target{p.ref, p.sut} {
		streams[tg] = [3]*watchStream{openWatch(t, tg), openWatch(t, tg), openWatch(t, tg)}
	}
	p.both(func(tg *target) {
		i := 0
		if tg == p.sut {
			i = 1
		}
		problems[i] = concurrentHistory(tg, streams[tg])
	})
	if len(problems[0]) > 0 {
		t.Fatalf("reference history inconsistent (harness problem?):\n  %s", strings.Join(problems[0], "\n  "))
	}
	if len(problems[1]) > 0 {
		t.Errorf("DIFFERENCE: %s's history under concurrent writers is inconsistent (etcd's is not):\n  %s", p.sut.name, strings.Join(problems[1], "\n  "))
	}
}

const (
	concurrentWriters = 4
	concurrentOps     = 150
)

// concurrentHistory runs the workload on tg and returns what is
// inconsistent. The first stream watches everything from the start; the
// second and third create watches while the writers run: one from "now"
// (start revision 0) and one replaying from an earlier revision, which
// catches up while new events arrive.
func concurrentHistory(tg *target, ws [3]*watchStream) []string {
	w := ws[0]
	ctx, cancel := context.WithTimeout(context.Background(), 4*callTimeout)
	defer cancel()
	if _, err := w.create(&pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, PrevKv: true}); err != nil {
		return []string{fmt.Sprintf("create watch: %v", err)}
	}

	// puts are the acknowledged puts: key, value and response revision.
	type ack struct {
		key, value string
		rev        int64
	}
	var (
		mu    sync.Mutex
		acks  []ack
		probs []string
		wg    sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		probs = append(probs, fmt.Sprintf(format, args...))
	}
	for wr := 0; wr < concurrentWriters; wr++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(wr), 7))
			for i := 0; i < concurrentOps; i++ {
				key := fmt.Sprintf("/registry/k%d", rnd.IntN(6))
				val := fmt.Sprintf("w%d-%d", wr, i)
				switch rnd.IntN(4) {
				case 0:
					resp, err := tg.kv.Put(ctx, &pb.PutRequest{Key: b(key), Value: b(val)})
					if err != nil {
						fail("put: %v", err)
						return
					}
					mu.Lock()
					acks = append(acks, ack{key, val, resp.Header.Revision})
					mu.Unlock()
				case 1:
					if _, err := tg.kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: b(key)}); err != nil {
						fail("delete: %v", err)
						return
					}
				default:
					// Optimistic update: read, then write if unchanged.
					rr, err := tg.kv.Range(ctx, &pb.RangeRequest{Key: b(key)})
					if err != nil {
						fail("range: %v", err)
						return
					}
					var mod int64
					if len(rr.Kvs) > 0 {
						mod = rr.Kvs[0].ModRevision
					}
					resp, err := tg.kv.Txn(ctx, &pb.TxnRequest{
						Compare: []*pb.Compare{{Key: b(key), Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_ModRevision{ModRevision: mod}}},
						Success: []*pb.RequestOp{opPut(key, val)},
						Failure: []*pb.RequestOp{opRange(key, "")},
					})
					if err != nil {
						fail("txn: %v", err)
						return
					}
					if resp.Succeeded {
						mu.Lock()
						acks = append(acks, ack{key, val, resp.Header.Revision})
						mu.Unlock()
					} else if fr := resp.Responses[0].GetResponseRange(); fr == nil || (len(fr.Kvs) > 0 && fr.Kvs[0].ModRevision == mod) || (len(fr.Kvs) == 0 && mod == 0) {
						fail("txn on %s failed its compare mod==%d but its failure branch read %v", key, mod, fr)
					}
				}
			}
		}()
	}
	// Midway, watch from now and replay from the current revision minus 20.
	var now, replayFrom int64
	var nowErr error
	for {
		rr, err := tg.kv.Range(ctx, &pb.RangeRequest{Key: b("x"), CountOnly: true})
		if err != nil {
			nowErr = err
			break
		}
		if rr.Header.Revision > 60 {
			replayFrom = rr.Header.Revision - 20
			break
		}
		// Writers are running; the revision grows and events arrive.
		select {
		case <-w.notify:
		case <-ctx.Done():
			nowErr = ctx.Err()
		}
		if nowErr != nil {
			break
		}
	}
	if nowErr == nil {
		resp, err := ws[1].create(&pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}})
		if err == nil {
			now = resp.Header.Revision
			_, err = ws[2].create(&pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: replayFrom})
		}
		nowErr = err
	}
	wg.Wait()
	if nowErr != nil {
		fail("creating watches midway: %v", nowErr)
	}
	if len(probs) > 0 {
		return probs
	}
	final, err := tg.kv.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		return []string{fmt.Sprintf("final range: %v", err)}
	}
	rev := final.Header.Revision
	if err := w.sync(ctx, rev); err != nil {
		return []string{fmt.Sprintf("watch never caught up with revision %d: %v", rev, err)}
	}
	eventsOf := func(w *watchStream) []*mvccpb.Event {
		var evs []*mvccpb.Event
		for _, r := range w.snapshot() {
			evs = append(evs, r.Events...)
		}
		return evs
	}
	events := eventsOf(w)
	for i, from := range []int64{now + 1, replayFrom} {
		sw := ws[i+1]
		if err := sw.sync(ctx, rev); err != nil {
			fail("watch created midway never caught up with revision %d: %v", rev, err)
			continue
		}
		var want []*mvccpb.Event
		for _, ev := range events {
			if ev.Kv.ModRevision >= from {
				want = append(want, &mvccpb.Event{Type: ev.Type, Kv: ev.Kv})
			}
		}
		if d := protoDiff(&pb.WatchResponse{Events: want}, &pb.WatchResponse{Events: eventsOf(sw)}); d != "" {
			fail("watch created midway from revision %d (store then at %d) saw different events than the full watch: %s", from, now, d)
		}
	}

	// Replay the events, checking each against the state before it.
	state := map[string]*mvccpb.KeyValue{}
	states := map[int64]map[string]*mvccpb.KeyValue{1: {}}
	seen := map[int64]bool{}
	last := int64(1)
	for _, ev := range events {
		kv := ev.Kv
		r := kv.ModRevision
		if r < last {
			fail("event at revision %d after one at %d", r, last)
		}
		if r != last {
			states[last] = clone(state)
		}
		last = r
		seen[r] = true
		k := string(kv.Key)
		prev := state[k]
		if !proto.Equal(ev.PrevKv, prev) && !(ev.PrevKv == nil && prev == nil) {
			fail("event %s %q at %d: prev_kv %v, replayed state %v", ev.Type, k, r, oneLine(ev.PrevKv), oneLine(prev))
		}
		switch ev.Type {
		case mvccpb.PUT:
			wantVer, wantCreate := int64(1), r
			if prev != nil {
				wantVer, wantCreate = prev.Version+1, prev.CreateRevision
			}
			if kv.Version != wantVer || kv.CreateRevision != wantCreate {
				fail("put %q at %d: version %d create %d, want %d and %d", k, r, kv.Version, kv.CreateRevision, wantVer, wantCreate)
			}
			state[k] = kv
		case mvccpb.DELETE:
			if prev == nil {
				fail("delete event of absent key %q at %d", k, r)
			}
			delete(state, k)
		}
	}
	states[last] = clone(state)
	for r := int64(2); r <= rev; r++ {
		if !seen[r] {
			fail("no event at revision %d (every revision up to %d changed something)", r, rev)
		}
	}
	if d := diffKVs(final.Kvs, state); d != "" {
		fail("final range differs from the replayed watch events: %s", d)
	}
	for _, a := range acks {
		var found bool
		for _, ev := range events {
			if ev.Kv.ModRevision == a.rev && string(ev.Kv.Key) == a.key && ev.Type == mvccpb.PUT {
				found = true
				if string(ev.Kv.Value) != a.value {
					fail("put %q acknowledged at %d with %q, event has %q", a.key, a.rev, a.value, ev.Kv.Value)
				}
			}
		}
		if !found {
			fail("put %q=%q acknowledged at revision %d has no event", a.key, a.value, a.rev)
		}
	}
	// Historic reads must match the replay.
	stride := max(rev/25, 1)
	for r := int64(1); r <= rev; r += stride {
		resp, err := tg.kv.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: r})
		if err != nil {
			fail("range at %d: %v", r, err)
			continue
		}
		// The state at r is the last recorded state at or below r.
		at := int64(1)
		for s := range states {
			if s <= r && s > at {
				at = s
			}
		}
		if d := diffKVs(resp.Kvs, states[at]); d != "" {
			fail("range at %d differs from the replayed watch events: %s", r, d)
		}
	}
	if len(probs) > 10 {
		probs = append(probs[:10], fmt.Sprintf("... and %d more", len(probs)-10))
	}
	return probs
}

func clone(m map[string]*mvccpb.KeyValue) map[string]*mvccpb.KeyValue {
	c := make(map[string]*mvccpb.KeyValue, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// diffKVs compares a range result with a replayed state.
func diffKVs(kvs []*mvccpb.KeyValue, state map[string]*mvccpb.KeyValue) string {
	var want []*mvccpb.KeyValue
	for _, kv := range state {
		want = append(want, kv)
	}
	sort.Slice(want, func(i, j int) bool { return bytes.Compare(want[i].Key, want[j].Key) < 0 })
	return protoDiff(&pb.RangeResponse{Kvs: want}, &pb.RangeResponse{Kvs: kvs})
}
