package conformance

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"google.golang.org/protobuf/proto"
)

// seedHistory writes revisions 2..9:
//
//	2 put a=1   3 put b=1   4 put a=2   5 delete a   6 put c=1, b=2 (one txn)
//	7 put a=3   8 delete [b, d) (b and c)   9 put d=1
func seedHistory(t *testing.T, p *pair) {
	t.Helper()
	p.put(t, "a", "1")
	p.put(t, "b", "1")
	p.put(t, "a", "2")
	p.run(t, deleteCall("a", &pb.DeleteRangeRequest{Key: b("a")}))
	p.run(t, txnCall("c=1 b=2", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("c", "1"), opPut("b", "2")}}))
	p.put(t, "a", "3")
	p.run(t, deleteCall("[b,d)", &pb.DeleteRangeRequest{Key: b("b"), RangeEnd: b("d")}))
	p.put(t, "d", "1")
}

// liveWrites writes a few more revisions touching every key of seedHistory.
func liveWrites(t *testing.T, p *pair) {
	t.Helper()
	p.put(t, "b", "live")
	p.run(t, txnCall("a=live, delete d", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "live"), opDelete("d", "")}}))
	p.put(t, "c", "live")
	p.run(t, deleteCall("everything", &pb.DeleteRangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}))
	p.put(t, "a", "again")
}

func TestWatch(t *testing.T) {
	all := func(r *pb.WatchCreateRequest) *pb.WatchCreateRequest {
		r.Key, r.RangeEnd = []byte{0}, []byte{0}
		return r
	}
	fast := serverOpts{FastElection: true}
	runScenarios(t, []scenario{
		{name: "create and cancel", opts: fast, run: func(t *testing.T, p *pair) {
			wp := p.openWatches(t)
			ra, sa := wp.create(t, "key a", &pb.WatchCreateRequest{Key: b("a")})
			p.put(t, "a", "1")
			p.put(t, "b", "1")
			p.run(t, deleteCall("a", &pb.DeleteRangeRequest{Key: b("a")}))
			wp.compare(t, "watch on a")
			wp.cancel(t, "watch on a", ra, sa)
			p.put(t, "a", "2")
			wp.create(t, "key b after cancel", &pb.WatchCreateRequest{Key: b("b")})
			// Canceling an unknown watch is answered by nothing at all.
			for _, w := range []*watchStream{wp.ref, wp.sut} {
				if err := w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 99}}}); err != nil {
					t.Fatalf("%s: %v", w.tg.name, err)
				}
			}
			p.put(t, "b", "2")
			wp.compare(t, "after cancel and unknown cancel")
		}},
		{name: "replay from start revision", opts: fast, run: func(t *testing.T, p *pair) {
			seedHistory(t, p)
			wp := p.openWatches(t)
			for rev := int64(0); rev <= 10; rev++ {
				wp.create(t, fmt.Sprintf("all from %d", rev), all(&pb.WatchCreateRequest{StartRevision: rev}))
			}
			for _, rev := range []int64{1, 4, 6} {
				wp.create(t, fmt.Sprintf("key a from %d", rev), &pb.WatchCreateRequest{Key: b("a"), StartRevision: rev})
				wp.create(t, fmt.Sprintf("key b from %d prev kv", rev), &pb.WatchCreateRequest{Key: b("b"), StartRevision: rev, PrevKv: true})
			}
			liveWrites(t, p)
			wp.compare(t, "replay then live")
		}},
		{name: "prev kv", opts: fast, run: func(t *testing.T, p *pair) {
			wp := p.openWatches(t)
			wp.create(t, "all live prev kv", all(&pb.WatchCreateRequest{PrevKv: true}))
			seedHistory(t, p)
			wp.create(t, "all replay prev kv", all(&pb.WatchCreateRequest{PrevKv: true, StartRevision: 2}))
			wp.create(t, "replay prev kv from 5", all(&pb.WatchCreateRequest{PrevKv: true, StartRevision: 5}))
			liveWrites(t, p)
			wp.compare(t, "prev kv")
		}},
		{name: "filters", opts: fast, run: func(t *testing.T, p *pair) {
			wp := p.openWatches(t)
			filters := map[string][]pb.WatchCreateRequest_FilterType{
				"noput":            {pb.WatchCreateRequest_NOPUT},
				"nodelete":         {pb.WatchCreateRequest_NODELETE},
				"both":             {pb.WatchCreateRequest_NOPUT, pb.WatchCreateRequest_NODELETE},
				"repeated noput":   {pb.WatchCreateRequest_NOPUT, pb.WatchCreateRequest_NOPUT},
				"unknown filter 7": {7},
			}
			names := []string{"noput", "nodelete", "both", "repeated noput", "unknown filter 7"}
			for _, n := range names {
				wp.create(t, "live "+n, all(&pb.WatchCreateRequest{Filters: filters[n], PrevKv: true}))
			}
			seedHistory(t, p)
			for _, n := range names {
				wp.create(t, "replay "+n, all(&pb.WatchCreateRequest{Filters: filters[n], StartRevision: 1}))
			}
			liveWrites(t, p)
			wp.compare(t, "filters")
		}},
		{name: "ranges", opts: fast, run: func(t *testing.T, p *pair) {
			seedHistory(t, p)
			wp := p.openWatches(t)
			reqs := []struct {
				name string
				req  *pb.WatchCreateRequest
			}{
				{"[b,d)", &pb.WatchCreateRequest{Key: b("b"), RangeEnd: b("d"), StartRevision: 2}},
				{"from c", &pb.WatchCreateRequest{Key: b("c"), RangeEnd: []byte{0}, StartRevision: 2}},
				{"prefix a", &pb.WatchCreateRequest{Key: b("a"), RangeEnd: b("b"), StartRevision: 2}},
				{"missing key", &pb.WatchCreateRequest{Key: b("zz"), StartRevision: 2}},
				{"empty key (means \\x00)", &pb.WatchCreateRequest{StartRevision: 2}},
				{"empty key with range end", &pb.WatchCreateRequest{RangeEnd: b("c"), StartRevision: 2}},
				{"key equals range end", &pb.WatchCreateRequest{Key: b("b"), RangeEnd: b("b")}},
				{"key after range end", &pb.WatchCreateRequest{Key: b("c"), RangeEnd: b("b")}},
				{"negative start revision", &pb.WatchCreateRequest{Key: b("a"), StartRevision: -3}},
				{"after errors, auto ID continues", &pb.WatchCreateRequest{Key: b("a")}},
			}
			for _, r := range reqs {
				wp.create(t, r.name, r.req)
			}
			liveWrites(t, p)
			wp.compare(t, "range watches")
		}},
		{name: "watch IDs", opts: fast, run: func(t *testing.T, p *pair) {
			wp := p.openWatches(t)
			reqs := []struct {
				name string
				req  *pb.WatchCreateRequest
			}{
				{"client ID 1", &pb.WatchCreateRequest{Key: b("a"), WatchId: 1}},
				{"auto (0)", &pb.WatchCreateRequest{Key: b("a")}},
				{"auto (skips 1)", &pb.WatchCreateRequest{Key: b("a")}},
				{"duplicate client ID 1", &pb.WatchCreateRequest{Key: b("b"), WatchId: 1}},
				{"client ID 100", &pb.WatchCreateRequest{Key: b("b"), WatchId: 100}},
				{"auto after 100", &pb.WatchCreateRequest{Key: b("b")}},
				{"negative client ID", &pb.WatchCreateRequest{Key: b("b"), WatchId: -5}},
			}
			for _, r := range reqs {
				wp.create(t, r.name, r.req)
			}
			p.put(t, "a", "1")
			p.put(t, "b", "1")
			// A second stream numbers its watches independently.
			wp2 := p.openWatches(t)
			wp2.create(t, "second stream auto", &pb.WatchCreateRequest{Key: b("a")})
			p.put(t, "a", "2")
			wp.compare(t, "watch IDs")
			wp2.compare(t, "second stream")
		}},
		{name: "compacted start revision", opts: fast, run: func(t *testing.T, p *pair) {
			seedHistory(t, p)
			p.run(t, compactCall("at 5", &pb.CompactionRequest{Revision: 5, Physical: true}))
			wp := p.openWatches(t)
			reqs := []struct {
				name      string
				req       *pb.WatchCreateRequest
				compacted bool
			}{
				{"all from 3 (compacted)", all(&pb.WatchCreateRequest{StartRevision: 3}), true},
				{"key a from 4 (compacted)", &pb.WatchCreateRequest{Key: b("a"), StartRevision: 4, PrevKv: true}, true},
				{"all from 5 (compaction revision)", all(&pb.WatchCreateRequest{StartRevision: 5, PrevKv: true}), false},
				{"all from 6", all(&pb.WatchCreateRequest{StartRevision: 6, PrevKv: true}), false},
				{"all from 0", all(&pb.WatchCreateRequest{}), false},
			}
			for _, r := range reqs {
				ref, sut := wp.create(t, r.name, r.req)
				if r.compacted {
					wp.waitCompacted(t, r.name, ref, sut)
					wp.cancel(t, "compacted "+r.name, ref, sut)
				}
			}
			liveWrites(t, p)
			wp.compare(t, "compacted watches")
		}},
		{name: "compaction while synced", opts: fast, run: func(t *testing.T, p *pair) {
			wp := p.openWatches(t)
			wp.create(t, "all live", all(&pb.WatchCreateRequest{PrevKv: true}))
			seedHistory(t, p)
			wp.sync(t)
			p.run(t, compactCall("at 8", &pb.CompactionRequest{Revision: 8, Physical: true}))
			liveWrites(t, p)
			wp.compare(t, "synced watch survives compaction")
		}},
		{name: "start revision in the future", opts: fast, run: func(t *testing.T, p *pair) {
			seedHistory(t, p)
			wp := p.openWatches(t)
			wp.create(t, "all from 11", all(&pb.WatchCreateRequest{StartRevision: 11, PrevKv: true}))
			liveWrites(t, p)
			wp.compare(t, "future start revision")
		}},
		{name: "progress request", opts: fast, run: func(t *testing.T, p *pair) {
			wp := p.openWatches(t)
			// Without watchers etcd does not answer; the stream's first
			// response is then the created one.
			wp.progress(t)
			wp.create(t, "key a", &pb.WatchCreateRequest{Key: b("a")})
			wp.compareRaw(t, "progress without watchers, then create")
			seedHistory(t, p)
			wp.create(t, "all", all(&pb.WatchCreateRequest{}))
			wp.sync(t)
			wp.progress(t)
			wp.compareProgress(t, "synced stream")
			p.put(t, "z", "1")
			wp.sync(t)
			wp.progress(t)
			wp.compareProgress(t, "after a write")
		}},
		{name: "many watchers one stream", opts: fast, run: func(t *testing.T, p *pair) {
			wp := p.openWatches(t)
			for i := 0; i < 20; i++ {
				wp.create(t, fmt.Sprintf("watcher %d", i), &pb.WatchCreateRequest{Key: b(fmt.Sprintf("k%d", i%4)), PrevKv: i%2 == 0})
			}
			var ops []*pb.RequestOp
			for i := 0; i < 4; i++ {
				ops = append(ops, opPut(fmt.Sprintf("k%d", i), "x"))
			}
			p.run(t, txnCall("put k0..k3", &pb.TxnRequest{Success: ops}))
			p.run(t, deleteCall("k0..", &pb.DeleteRangeRequest{Key: b("k"), RangeEnd: b("l")}))
			wp.compare(t, "20 watchers")
		}},
		{name: "fragment", opts: serverOpts{FastElection: true, MaxRequestBytes: 64 * 1024}, run: func(t *testing.T, p *pair) {
			big := strings.Repeat("v", 60*1024)
			for i := 0; i < 12; i++ {
				p.put(t, fmt.Sprintf("f%02d", i), big)
			}
			p.run(t, putCall("over the request limit", &pb.PutRequest{Key: b("f"), Value: b(big + strings.Repeat("w", 8*1024))}))
			wp := p.openWatches(t)
			wp.create(t, "replay fragmented", all(&pb.WatchCreateRequest{StartRevision: 2, Fragment: true}))
			wp.create(t, "replay not fragmented", all(&pb.WatchCreateRequest{StartRevision: 2}))
			wp.create(t, "replay fragmented prev kv", all(&pb.WatchCreateRequest{StartRevision: 2, Fragment: true, PrevKv: true}))
			p.put(t, "f00", "small")
			wp.compare(t, "fragmented watch")
			for _, w := range []*watchStream{wp.ref, wp.sut} {
				n := 0
				for _, r := range w.snapshot() {
					if r.Fragment {
						n++
					}
				}
				t.Logf("%s sent %d responses with fragment=true (not compared)", w.tg.name, n)
			}
		}},
		{name: "slow reader", opts: fast, run: func(t *testing.T, p *pair) {
			wp := p.openWatches(t)
			wp.create(t, "all prev kv", all(&pb.WatchCreateRequest{PrevKv: true}))
			wp.create(t, "one key", &pb.WatchCreateRequest{Key: b("k0007")})
			wp.ref.pause()
			wp.sut.pause()
			// 300 revisions of 20 x 1 KiB: more responses than etcd buffers
			// per stream and more bytes than the HTTP/2 windows hold.
			val := strings.Repeat("s", 1024)
			for i := 0; i < 300; i++ {
				var ops []*pb.RequestOp
				for j := 0; j < 20; j++ {
					ops = append(ops, opPut(fmt.Sprintf("k%04d", (i*7+j)%400), val))
				}
				if _, _, d := p.exec(txnCall("burst", &pb.TxnRequest{Success: ops})); d != "" {
					t.Fatalf("burst txn differs: %s", d)
				}
			}
			wp.ref.resume()
			wp.sut.resume()
			wp.compare(t, "slow reader")
		}},
		{name: "long replay", opts: fast, run: func(t *testing.T, p *pair) {
			// More than 1000 revisions: etcd replays them in batches.
			for i := 0; i < 1100; i++ {
				req := &pb.PutRequest{Key: b(fmt.Sprintf("r%02d", i%37)), Value: b(fmt.Sprint(i))}
				if i%10 == 9 {
					if _, _, d := p.exec(deleteCall("replay history", &pb.DeleteRangeRequest{Key: req.Key})); d != "" {
						t.Fatalf("history differs: %s", d)
					}
					continue
				}
				if _, _, d := p.exec(putCall("replay history", req)); d != "" {
					t.Fatalf("history differs: %s", d)
				}
			}
			wp := p.openWatches(t)
			wp.create(t, "all from 2 prev kv", all(&pb.WatchCreateRequest{StartRevision: 2, PrevKv: true}))
			wp.create(t, "one key from 500", &pb.WatchCreateRequest{Key: b("r05"), StartRevision: 500})
			wp.create(t, "prefix from 1000 no put", &pb.WatchCreateRequest{Key: b("r1"), RangeEnd: b("r2"), StartRevision: 1000, Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}})
			p.put(t, "r00", "live")
			wp.compare(t, "long replay")
		}},
		{name: "stream keeps sending after close send", opts: fast, run: func(t *testing.T, p *pair) {
			// etcd treats the client's half-close as "no more requests": the
			// stream stays open and events keep coming.
			streams := map[*target]pb.Watch_WatchClient{}
			var mu sync.Mutex
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p.run(t, call{desc: "Watch create, then CloseSend", do: func(_ context.Context, tg *target) (proto.Message, error) {
				s, err := tg.watch.Watch(ctx)
				if err != nil {
					return nil, err
				}
				mu.Lock()
				streams[tg] = s
				mu.Unlock()
				if err := s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: b("a")}}}); err != nil {
					return nil, err
				}
				created, err := s.Recv()
				if err != nil {
					return nil, err
				}
				return created, s.CloseSend()
			}})
			p.put(t, "a", "after close send")
			p.run(t, call{desc: "Watch event after CloseSend", do: func(_ context.Context, tg *target) (proto.Message, error) {
				mu.Lock()
				s := streams[tg]
				mu.Unlock()
				if s == nil {
					return nil, fmt.Errorf("no stream")
				}
				got := make(chan outcome, 1)
				go func() {
					r, err := s.Recv()
					if r != nil {
						r.Header = nil
					}
					got <- outcome{r, err}
				}()
				select {
				case o := <-got:
					return o.resp, o.err
				case <-time.After(quietTimeout):
					return nil, fmt.Errorf("no event within %v", quietTimeout)
				}
			}})
		}},
		{name: "clientv3 watch", opts: fast, run: func(t *testing.T, p *pair) {
			seedHistory(t, p)
			// Revisions 3..9 of seedHistory hold 9 events; waiting for all
			// of them makes the comparison independent of batching.
			const wantEvents = 9
			type got struct {
				resps []*pb.WatchResponse
				err   error
			}
			var mu sync.Mutex
			res := map[*target]got{}
			p.both(func(tg *target) {
				ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
				defer cancel()
				ctx = clientv3.WithRequireLeader(ctx)
				wch := tg.cli.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(3), clientv3.WithPrevKV(), clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())
				var g got
				events := 0
				for wr := range wch {
					r := &pb.WatchResponse{Header: wr.Header, Created: wr.Created, Canceled: wr.Canceled, CompactRevision: wr.CompactRevision, Events: convertEvents(wr.Events)}
					if wr.IsProgressNotify() {
						continue
					}
					if len(r.Events) > 0 {
						r.Header = nil
					}
					g.resps = append(g.resps, r)
					events += len(wr.Events)
					if events >= wantEvents {
						break
					}
					if err := wr.Err(); err != nil {
						g.err = err
						break
					}
				}
				if events < wantEvents && g.err == nil {
					g.err = ctx.Err()
				}
				mu.Lock()
				res[tg] = g
				mu.Unlock()
			})
			r, s := res[p.ref], res[p.sut]
			if r.err != nil {
				t.Fatalf("reference: %v", r.err)
			}
			if s.err != nil {
				t.Errorf("DIFFERENCE in clientv3 watch: %s: %v", p.sut.name, s.err)
			}
			if d := diffFlat(p.flatten(p.ref, r.resps), p.flatten(p.sut, s.resps)); d != "" {
				t.Errorf("DIFFERENCE in clientv3 watch from revision 3 (-%s +%s):\n%s", p.ref.name, p.sut.name, d)
			}
		}},
	})
}

func convertEvents(evs []*clientv3.Event) []*mvccpb.Event {
	out := make([]*mvccpb.Event, len(evs))
	for i, e := range evs {
		out[i] = (*mvccpb.Event)(e)
	}
	return out
}

// waitCompacted waits (up to quietTimeout) on both streams for the
// compaction notice of a watch.
func (wp *watchPair) waitCompacted(t testing.TB, desc string, refID, sutID int64) {
	t.Helper()
	wait := func(w *watchStream, id int64) error {
		ctx, cancel := context.WithTimeout(context.Background(), quietTimeout)
		defer cancel()
		_, err := w.waitFor(ctx, 0, func(r *pb.WatchResponse) bool { return r.WatchId == id && r.CompactRevision != 0 })
		return err
	}
	if err := wait(wp.ref, refID); err != nil {
		t.Fatalf("reference: no compaction notice for %s: %v", desc, err)
	}
	if err := wait(wp.sut, sutID); err != nil {
		t.Errorf("DIFFERENCE in %s: %s sent no compaction notice (etcd did): %v", desc, wp.sut.tg.name, err)
	}
}

// progress sends a progress request on both streams.
func (wp *watchPair) progress(t testing.TB) {
	t.Helper()
	for _, w := range []*watchStream{wp.ref, wp.sut} {
		if err := w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}); err != nil {
			t.Fatalf("%s: progress request: %v", w.tg.name, err)
		}
	}
}

// compareProgress waits for the last progress request's answer on both
// streams and compares the two responses in full.
func (wp *watchPair) compareProgress(t testing.TB, desc string) {
	t.Helper()
	rev := wp.p.rev(t)
	var out [2]outcome
	for i, w := range []*watchStream{wp.ref, wp.sut} {
		ctx, cancel := context.WithTimeout(context.Background(), quietTimeout)
		resps := w.snapshot()
		// The answer to the request just sent is the last progress
		// notification at the current revision.
		j, err := w.waitFor(ctx, max(0, len(resps)-1), func(r *pb.WatchResponse) bool { return isProgress(r) && r.Header.Revision == rev })
		cancel()
		if err != nil {
			out[i] = outcome{err: fmt.Errorf("no progress notification at revision %d: %w", rev, err)}
			continue
		}
		out[i] = outcome{resp: w.at(j)}
	}
	c := call{desc: "Watch progress request on " + desc, req: &pb.WatchProgressRequest{}}
	if d := wp.p.diff(c, out[0], out[1]); d != "" {
		t.Errorf("%s", wp.p.report(c, d, out[0], out[1]))
	}
}

// compareRaw compares every response received so far, in order, without
// flattening.
func (wp *watchPair) compareRaw(t testing.TB, desc string) {
	t.Helper()
	r, s := wp.ref.snapshot(), wp.sut.snapshot()
	var rn, sn []*pb.WatchResponse
	for _, x := range r {
		rn = append(rn, normalize(x).(*pb.WatchResponse))
	}
	for _, x := range s {
		x := normalize(x).(*pb.WatchResponse)
		wp.p.unalias(x)
		sn = append(sn, x)
	}
	if d := diffFlat(flatWatch{0: rn}, flatWatch{0: sn}); d != "" {
		t.Errorf("DIFFERENCE in raw watch responses of %s (-%s +%s):\n%s", desc, wp.p.ref.name, wp.p.sut.name, d)
	}
}

// TestWatchProgressNotify checks the periodic progress notifications of
// watchers created with progress_notify, with the interval shortened to
// 300ms on both sides. It does not run in parallel with other tests: etcd
// keeps the interval in a process-wide variable that every embedded etcd
// sets when it starts.
func TestWatchProgressNotify(t *testing.T) {
	t.Cleanup(func() { v3rpc.SetProgressReportInterval(10 * time.Minute) })
	p := newPair(t, serverOpts{FastElection: true, WatchProgressNotifyInterval: 300 * time.Millisecond})
	seedHistory(t, p)
	wp := p.openWatches(t)
	wp.create(t, "all with progress_notify", &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, ProgressNotify: true})
	wp.create(t, "key a without progress_notify", &pb.WatchCreateRequest{Key: b("a")})
	rev := p.rev(t)
	var out [2]outcome
	p.both(func(tg *target) {
		w, i := wp.ref, 0
		if tg == p.sut {
			w, i = wp.sut, 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		j, err := w.waitFor(ctx, 0, isProgress)
		if err != nil {
			out[i] = outcome{err: fmt.Errorf("no progress notification within 5s: %w", err)}
			return
		}
		out[i] = outcome{resp: w.at(j)}
	})
	c := call{desc: fmt.Sprintf("periodic progress notification (store at revision %d)", rev)}
	if d := p.diff(c, out[0], out[1]); d != "" {
		t.Errorf("%s", p.report(c, d, out[0], out[1]))
	}
	p.put(t, "a", "x")
	wp.compare(t, "events next to progress notifications")
}
