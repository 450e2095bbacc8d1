package conformance

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// watchStream is one Watch stream whose responses are all recorded, in
// arrival order, by a receiving goroutine.
type watchStream struct {
	tg     *target
	stream pb.Watch_WatchClient
	cancel context.CancelFunc

	mu     sync.Mutex
	resps  []*pb.WatchResponse
	err    error         // why the stream ended, once it has
	notify chan struct{} // signalled on every new response and at the end
	done   chan struct{} // closed when the receiver returns

	// gate is closed while the receiver may read; pause replaces it, to
	// make a slow client whose unread responses back up into the server.
	gateMu sync.Mutex
	gate   chan struct{}
	ctx    context.Context

	// ctrl is the index after the last control response (created or
	// canceled) a caller has consumed.
	ctrl int
	// active are the watch IDs created and not yet canceled.
	active map[int64]bool
}

// openWatch opens a Watch stream on tg; it is closed at the end of the test.
func openWatch(t testing.TB, tg *target) *watchStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := tg.watch.Watch(ctx)
	if err != nil {
		cancel()
		t.Fatalf("%s: open watch stream: %v", tg.name, err)
	}
	open := make(chan struct{})
	close(open)
	w := &watchStream{tg: tg, stream: s, cancel: cancel, notify: make(chan struct{}, 1), done: make(chan struct{}), active: map[int64]bool{}, gate: open, ctx: ctx}
	go w.receive()
	t.Cleanup(w.close)
	return w
}

func (w *watchStream) receive() {
	defer close(w.done)
	for {
		w.gateMu.Lock()
		gate := w.gate
		w.gateMu.Unlock()
		select {
		case <-gate:
		case <-w.ctx.Done():
		}
		resp, err := w.stream.Recv()
		w.mu.Lock()
		if err != nil {
			w.err = err
		} else {
			w.resps = append(w.resps, resp)
		}
		w.mu.Unlock()
		select {
		case w.notify <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// pause stops reading responses until resume.
func (w *watchStream) pause() {
	w.gateMu.Lock()
	defer w.gateMu.Unlock()
	w.gate = make(chan struct{})
}

// resume reads responses again.
func (w *watchStream) resume() {
	w.gateMu.Lock()
	defer w.gateMu.Unlock()
	close(w.gate)
}

// close ends the stream and waits for the receiver.
func (w *watchStream) close() {
	w.cancel()
	<-w.done
}

// snapshot returns the responses received so far.
func (w *watchStream) snapshot() []*pb.WatchResponse {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*pb.WatchResponse(nil), w.resps...)
}

func (w *watchStream) send(req *pb.WatchRequest) error {
	return w.stream.Send(req)
}

// waitFor waits until a response at index >= from satisfies pred and
// returns its index, or -1 if ctx ends or the stream fails first.
func (w *watchStream) waitFor(ctx context.Context, from int, pred func(*pb.WatchResponse) bool) (int, error) {
	for {
		w.mu.Lock()
		for i := from; i < len(w.resps); i++ {
			if pred(w.resps[i]) {
				w.mu.Unlock()
				return i, nil
			}
		}
		from = len(w.resps)
		err := w.err
		w.mu.Unlock()
		if err != nil {
			return -1, fmt.Errorf("stream ended: %w", err)
		}
		select {
		case <-w.notify:
		case <-ctx.Done():
			return -1, ctx.Err()
		}
	}
}

func isProgress(r *pb.WatchResponse) bool {
	return len(r.Events) == 0 && !r.Created && !r.Canceled && r.CompactRevision == 0 && r.Header != nil && r.Header.Revision != 0
}

// create sends a create request and waits for its "created" response (or
// returns nil if none arrives within quietTimeout). Creations on one stream
// are answered in order, so the next created response is this one's.
func (w *watchStream) create(req *pb.WatchCreateRequest) (*pb.WatchResponse, error) {
	if err := w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), quietTimeout)
	defer cancel()
	i, err := w.waitFor(ctx, w.ctrl, func(r *pb.WatchResponse) bool { return r.Created })
	if err != nil {
		return nil, fmt.Errorf("no created response: %w", err)
	}
	w.ctrl = i + 1
	resp := w.at(i)
	if !resp.Canceled {
		w.active[resp.WatchId] = true
	}
	return resp, nil
}

func (w *watchStream) at(i int) *pb.WatchResponse {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.resps[i]
}

// cancelWatch sends a cancel request and waits for the matching canceled
// response (nil if none arrives within quietTimeout).
func (w *watchStream) cancelWatch(id int64) (*pb.WatchResponse, error) {
	if err := w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}}); err != nil {
		return nil, err
	}
	delete(w.active, id)
	ctx, cancel := context.WithTimeout(context.Background(), quietTimeout)
	defer cancel()
	i, err := w.waitFor(ctx, w.ctrl, func(r *pb.WatchResponse) bool {
		return r.Canceled && !r.Created && r.CompactRevision == 0 && r.WatchId == id
	})
	if err != nil {
		return nil, fmt.Errorf("no canceled response for watch %d: %w", id, err)
	}
	w.ctrl = i + 1
	return w.at(i), nil
}

// progressRetry is how often sync repeats its progress request: etcd drops
// progress requests while a watcher of the stream is still catching up,
// which it does every 100ms.
const progressRetry = 50 * time.Millisecond

// sync waits until the stream has delivered every event up to rev: it sends
// progress requests until a progress notification at rev or later arrives.
// etcd sends those only when all watchers of the stream are synced, after
// all their earlier events. A stream without active watchers gets no
// progress notification and needs no sync.
func (w *watchStream) sync(ctx context.Context, rev int64) error {
	if len(w.active) == 0 {
		return nil
	}
	from := len(w.snapshot())
	tick := time.NewTicker(progressRetry)
	defer tick.Stop()
	for {
		if err := w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}); err != nil {
			return err
		}
		rctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-tick.C:
			case <-rctx.Done():
			}
			cancel()
		}()
		_, err := w.waitFor(rctx, from, func(r *pb.WatchResponse) bool { return isProgress(r) && r.Header.Revision >= rev })
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no progress notification at revision %d: %w", rev, ctx.Err())
		}
		if !errors.Is(err, context.Canceled) {
			return err
		}
	}
}

// flatWatch is the comparable form of a stream's responses: per watch ID,
// the sequence of created / canceled / compacted notices and of single
// events. How events are batched into responses and fragments depends on
// timing and is not compared; neither are progress notifications (how many
// sync requested them depends on timing) nor the header revision of event
// responses (the store revision when the batch was sent).
type flatWatch map[int64][]*pb.WatchResponse

func (p *pair) flatten(tg *target, resps []*pb.WatchResponse) flatWatch {
	out := flatWatch{}
	for _, r := range resps {
		r := normalize(r).(*pb.WatchResponse)
		if tg == p.sut {
			p.unalias(r)
		}
		switch {
		case isProgress(r):
		case len(r.Events) > 0:
			for _, ev := range r.Events {
				out[r.WatchId] = append(out[r.WatchId], &pb.WatchResponse{WatchId: r.WatchId, Events: []*mvccpb.Event{ev}})
			}
			if r.Created || r.Canceled || r.CompactRevision != 0 {
				out[r.WatchId] = append(out[r.WatchId], &pb.WatchResponse{WatchId: r.WatchId, Created: r.Created, Canceled: r.Canceled, CompactRevision: r.CompactRevision, CancelReason: r.CancelReason})
			}
		default:
			n := &pb.WatchResponse{Header: r.Header, WatchId: r.WatchId, Created: r.Created, Canceled: r.Canceled, CompactRevision: r.CompactRevision, CancelReason: r.CancelReason}
			out[r.WatchId] = append(out[r.WatchId], n)
		}
	}
	return out
}

// diffFlat compares two flattened streams. (cmp.Diff is slow on large
// values, so it only runs once proto.Equal found a difference.)
func diffFlat(ref, sut flatWatch) string {
	if equalFlat(ref, sut) {
		return ""
	}
	return cmp.Diff(ref, sut, protocmp.Transform())
}

func equalFlat(a, b flatWatch) bool {
	if len(a) != len(b) {
		return false
	}
	for id, as := range a {
		bs, ok := b[id]
		if !ok || len(as) != len(bs) {
			return false
		}
		for i := range as {
			if !proto.Equal(as[i], bs[i]) {
				return false
			}
		}
	}
	return true
}

// String renders a flattened stream readably, one line per item.
func (f flatWatch) String() string {
	ids := make([]int64, 0, len(f))
	for id := range f {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var b strings.Builder
	for _, id := range ids {
		for _, r := range f[id] {
			fmt.Fprintf(&b, "    watch %d: %s\n", id, oneLine(r))
		}
	}
	return b.String()
}

// watchPair is the same stream opened on both systems.
type watchPair struct {
	p        *pair
	ref, sut *watchStream
}

func (p *pair) openWatches(t testing.TB) *watchPair {
	t.Helper()
	return &watchPair{p: p, ref: openWatch(t, p.ref), sut: openWatch(t, p.sut)}
}

// create creates the same watch on both streams and compares the created
// responses. It returns the watch IDs (which may differ).
func (wp *watchPair) create(t testing.TB, desc string, req *pb.WatchCreateRequest) (refID, sutID int64) {
	t.Helper()
	return wp.do(t, "Watch create "+desc, req, func(w *watchStream) (*pb.WatchResponse, error) { return w.create(req) })
}

// cancel cancels the watch on both streams and compares the responses.
func (wp *watchPair) cancel(t testing.TB, desc string, refID, sutID int64) {
	t.Helper()
	wp.do(t, "Watch cancel "+desc, &pb.WatchCancelRequest{WatchId: refID}, func(w *watchStream) (*pb.WatchResponse, error) {
		if w == wp.ref {
			return w.cancelWatch(refID)
		}
		return w.cancelWatch(sutID)
	})
}

func (wp *watchPair) do(t testing.TB, desc string, req proto.Message, fn func(w *watchStream) (*pb.WatchResponse, error)) (refID, sutID int64) {
	t.Helper()
	var r, s outcome
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); resp, err := fn(wp.ref); r = outcome{resp, err} }()
	go func() { defer wg.Done(); resp, err := fn(wp.sut); s = outcome{resp, err} }()
	wg.Wait()
	c := call{desc: desc, req: req}
	if d := wp.p.diff(c, r, s); d != "" {
		t.Errorf("%s", wp.p.report(c, d, r, s))
	}
	if r.err != nil {
		t.Fatalf("reference: %s: %v", desc, r.err)
	}
	refID = r.resp.(*pb.WatchResponse).WatchId
	sutID = refID
	if s.err == nil {
		sutID = s.resp.(*pb.WatchResponse).WatchId
	}
	return refID, sutID
}

// sync waits until both streams delivered everything up to the reference's
// current revision.
func (wp *watchPair) sync(t testing.TB) {
	t.Helper()
	rev := wp.p.rev(t)
	var errs [2]error
	var wg sync.WaitGroup
	wg.Add(2)
	for i, w := range []*watchStream{wp.ref, wp.sut} {
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			errs[i] = w.sync(ctx, rev)
		}()
	}
	wg.Wait()
	if errs[0] != nil {
		t.Fatalf("reference: watch sync: %v", errs[0])
	}
	if errs[1] != nil {
		t.Errorf("DIFFERENCE in watch progress: %s: %v (etcd answered the progress request)", wp.sut.tg.name, errs[1])
	}
}

// compare syncs both streams and compares their flattened responses.
func (wp *watchPair) compare(t testing.TB, desc string) {
	t.Helper()
	wp.sync(t)
	wp.compareNow(t, desc)
}

// compareNow compares the flattened responses received so far.
func (wp *watchPair) compareNow(t testing.TB, desc string) {
	t.Helper()
	r, s := wp.p.flatten(wp.p.ref, wp.ref.snapshot()), wp.p.flatten(wp.p.sut, wp.sut.snapshot())
	if d := diffFlat(r, s); d != "" {
		t.Errorf("DIFFERENCE in watch responses of %s\n  %s:\n%s  %s:\n%s  diff (-%s +%s):\n%s",
			desc, wp.p.ref.name, r, wp.p.sut.name, s, wp.p.ref.name, wp.p.sut.name, indent(d, "    "))
	}
}

// compareWatch creates one watch on fresh streams, waits until both
// delivered everything up to the current revision, and compares.
func (p *pair) compareWatch(t testing.TB, desc string, req *pb.WatchCreateRequest) {
	t.Helper()
	wp := p.openWatches(t)
	wp.create(t, desc, req)
	wp.compare(t, desc)
}

// collectEvents opens a stream, creates a watch and returns its events once
// it has n of them, or what it has when ctx ends (with the error).
func collectEvents(ctx context.Context, tg *target, req *pb.WatchCreateRequest, n int) ([]*mvccpb.Event, error) {
	s, err := tg.watch.Watch(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}}); err != nil {
		return nil, err
	}
	var evs []*mvccpb.Event
	for len(evs) < n {
		resp, err := s.Recv()
		if err != nil {
			return evs, err
		}
		if resp.Canceled {
			return evs, fmt.Errorf("watch canceled: %v", oneLine(resp))
		}
		evs = append(evs, resp.Events...)
	}
	return evs, nil
}
