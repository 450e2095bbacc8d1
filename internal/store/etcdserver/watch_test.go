package etcdserver

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const watchTestWait = 10 * time.Second

// startWatchTestServer starts a server on a free local port.
func startWatchTestServer(t *testing.T, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		Name:             "watch-test",
		DataDir:          t.TempDir(),
		ListenClientURLs: []string{"http://127.0.0.1:0"},
		UnsafeNoFsync:    true,
		Logger:           slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func watchTestAddr(s *Server) string {
	return strings.TrimPrefix(s.ClientURLs()[0], "http://")
}

// rawWatch is a Watch stream driven request by request.
type rawWatch struct {
	t     *testing.T
	s     *Server
	c     pb.Watch_WatchClient
	respc chan *pb.WatchResponse
	errc  chan error
}

func openRawWatch(t *testing.T, s *Server) *rawWatch {
	t.Helper()
	conn, err := grpc.NewClient(watchTestAddr(s), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := &rawWatch{t: t, s: s, c: c, respc: make(chan *pb.WatchResponse, 100), errc: make(chan error, 1)}
	go func() {
		for {
			resp, err := c.Recv()
			if err != nil {
				w.errc <- err
				return
			}
			w.respc <- resp
		}
	}()
	return w
}

func (w *rawWatch) send(req *pb.WatchRequest) {
	w.t.Helper()
	if err := w.c.Send(req); err != nil {
		w.t.Fatal(err)
	}
}

func (w *rawWatch) create(cr *pb.WatchCreateRequest) {
	w.t.Helper()
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}})
}

func (w *rawWatch) cancel(id int64) {
	w.t.Helper()
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}})
}

func (w *rawWatch) progress() {
	w.t.Helper()
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
}

func (w *rawWatch) recv() *pb.WatchResponse {
	w.t.Helper()
	select {
	case resp := <-w.respc:
		return resp
	case err := <-w.errc:
		w.t.Fatalf("stream ended: %v", err)
	case <-time.After(watchTestWait):
		w.t.Fatal("no watch response")
	}
	return nil
}

// expect receives one response and compares it with want, header included
// (want.Header.Revision is the expected revision; the IDs are filled in).
func (w *rawWatch) expect(want *pb.WatchResponse) {
	w.t.Helper()
	got := w.recv()
	want = proto.Clone(want).(*pb.WatchResponse)
	rev := int64(0)
	if want.Header != nil {
		rev = want.Header.Revision
	}
	want.Header = w.s.header(rev)
	if !proto.Equal(got, want) {
		w.t.Fatalf("got  %v\nwant %v", got, want)
	}
}

func watchTestPut(t *testing.T, s *Server, kvs ...string) int64 {
	t.Helper()
	w := s.store.Write()
	for i := 0; i+1 < len(kvs); i += 2 {
		if err := w.Put([]byte(kvs[i]), []byte(kvs[i+1]), 0); err != nil {
			t.Fatal(err)
		}
	}
	rev := w.Rev()
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	return rev
}

func watchTestDelete(t *testing.T, s *Server, key string) int64 {
	t.Helper()
	w := s.store.Write()
	w.DeleteRange([]byte(key), nil)
	rev := w.Rev()
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	return rev
}

func watchHdr(rev int64) *pb.ResponseHeader { return &pb.ResponseHeader{Revision: rev} }

func TestWatchCreateAndCancel(t *testing.T) {
	s := startWatchTestServer(t, nil)
	w := openRawWatch(t, s)
	rev := s.store.Rev()
	steps := []struct {
		name string
		do   func()
		want *pb.WatchResponse
	}{
		{"auto ID", func() { w.create(&pb.WatchCreateRequest{Key: []byte("a")}) },
			&pb.WatchResponse{Header: watchHdr(rev), WatchId: 0, Created: true}},
		{"next auto ID", func() { w.create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("b")}) },
			&pb.WatchResponse{Header: watchHdr(rev), WatchId: 1, Created: true}},
		{"client ID", func() { w.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 5}) },
			&pb.WatchResponse{Header: watchHdr(rev), WatchId: 5, Created: true}},
		{"duplicate ID", func() { w.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 5}) },
			&pb.WatchResponse{Header: watchHdr(rev), WatchId: -1, Created: true, Canceled: true, CancelReason: reasonDuplicateID}},
		{"empty range", func() { w.create(&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")}) },
			&pb.WatchResponse{Header: watchHdr(rev), WatchId: -1, Created: true, Canceled: true, CancelReason: reasonEmptyRange}},
		{"negative start", func() { w.create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1}) },
			&pb.WatchResponse{Header: watchHdr(rev), WatchId: -1, Created: true, Canceled: true, CancelReason: rpctypes.ErrCompacted.Error()}},
		{"cancel", func() { w.cancel(1) },
			&pb.WatchResponse{Header: watchHdr(rev), WatchId: 1, Canceled: true}},
		// An unknown ID gets no answer: the next response is the creation.
		{"cancel unknown then create", func() {
			w.cancel(42)
			w.send(&pb.WatchRequest{}) // unknown request types are ignored
			w.create(&pb.WatchCreateRequest{})
		}, &pb.WatchResponse{Header: watchHdr(rev), WatchId: 2, Created: true}},
		{"progress", func() { w.progress() },
			&pb.WatchResponse{Header: watchHdr(rev), WatchId: -1}},
	}
	for _, st := range steps {
		st.do()
		t.Run(st.name, func(t *testing.T) {
			w.t = t
			w.expect(st.want)
		})
		if t.Failed() {
			return
		}
	}
}

func TestWatchEvents(t *testing.T) {
	s := startWatchTestServer(t, nil)
	watchTestPut(t, s, "a", "1") // 2
	watchTestPut(t, s, "a", "2") // 3
	watchTestDelete(t, s, "a")   // 4
	watchTestPut(t, s, "b", "1") // 5

	kv := func(key, val string, create, mod, ver int64) *mvccpb.KeyValue {
		return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: create, ModRevision: mod, Version: ver}
	}
	a1, a2, b1 := kv("a", "1", 2, 2, 1), kv("a", "2", 2, 3, 2), kv("b", "1", 5, 5, 1)
	del := &mvccpb.KeyValue{Key: []byte("a"), ModRevision: 4}

	tests := []struct {
		name string
		req  *pb.WatchCreateRequest
		want []*mvccpb.Event
	}{
		{"history", &pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 2}, []*mvccpb.Event{
			{Type: mvccpb.PUT, Kv: a1}, {Type: mvccpb.PUT, Kv: a2}, {Type: mvccpb.DELETE, Kv: del}}},
		{"prev kv", &pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 2, PrevKv: true}, []*mvccpb.Event{
			{Type: mvccpb.PUT, Kv: a1}, {Type: mvccpb.PUT, Kv: a2, PrevKv: a1}, {Type: mvccpb.DELETE, Kv: del, PrevKv: a2}}},
		{"no put", &pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("c"), StartRevision: 1,
			Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}}, []*mvccpb.Event{
			{Type: mvccpb.DELETE, Kv: del}}},
		{"no delete from key", &pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}, StartRevision: 3,
			Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}}, []*mvccpb.Event{
			{Type: mvccpb.PUT, Kv: a2}, {Type: mvccpb.PUT, Kv: b1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := openRawWatch(t, s)
			w.create(tt.req)
			w.expect(&pb.WatchResponse{Header: watchHdr(5), Created: true})
			var got []*mvccpb.Event
			for len(got) < len(tt.want) {
				resp := w.recv()
				if resp.WatchId != 0 || resp.Header.Revision != 5 {
					t.Fatalf("response %v", resp)
				}
				got = append(got, resp.Events...)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !proto.Equal(got[i], tt.want[i]) {
					t.Fatalf("event %d: got %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}

	// Live events: one response per revision, headed by that revision.
	w := openRawWatch(t, s)
	w.create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("c"), PrevKv: true})
	w.expect(&pb.WatchResponse{Header: watchHdr(5), Created: true})
	rev := watchTestPut(t, s, "a", "x", "b", "y")
	w.expect(&pb.WatchResponse{Header: watchHdr(rev), Events: []*mvccpb.Event{
		{Type: mvccpb.PUT, Kv: kv("a", "x", rev, rev, 1)},
		{Type: mvccpb.PUT, Kv: kv("b", "y", 5, rev, 2), PrevKv: b1},
	}})
}

func TestWatchCompactedStart(t *testing.T) {
	s := startWatchTestServer(t, nil)
	for range 4 {
		watchTestPut(t, s, "a", "v")
	}
	if _, err := s.store.Compact(4); err != nil {
		t.Fatal(err)
	}
	w := openRawWatch(t, s)
	w.create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 3})
	w.expect(&pb.WatchResponse{Header: watchHdr(5), Created: true})
	w.expect(&pb.WatchResponse{Header: watchHdr(0), Canceled: true, CompactRevision: 4})
	// The watcher stays until canceled, as in etcd.
	w.cancel(0)
	w.expect(&pb.WatchResponse{Header: watchHdr(5), Canceled: true})
	// The compacted revision itself is still available.
	w.create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 4})
	w.expect(&pb.WatchResponse{Header: watchHdr(5), WatchId: 1, Created: true})
	var revs []int64
	for len(revs) < 2 {
		for _, ev := range w.recv().Events {
			revs = append(revs, ev.Kv.ModRevision)
		}
	}
	if len(revs) != 2 || revs[0] != 4 || revs[1] != 5 {
		t.Fatalf("revisions %v, want [4 5]", revs)
	}
}

func TestWatchFragment(t *testing.T) {
	// Fragments are cut at MaxRequestBytes plus etcd's gRPC overhead.
	s := startWatchTestServer(t, func(c *Config) { c.MaxRequestBytes = 1 })
	w := openRawWatch(t, s)
	w.create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), Fragment: true})
	w.expect(&pb.WatchResponse{Header: watchHdr(1), Created: true})
	w.create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	w.expect(&pb.WatchResponse{Header: watchHdr(1), WatchId: 1, Created: true})

	big := strings.Repeat("x", 200*1024)
	rev := watchTestPut(t, s, "k1", big, "k2", big, "k3", big, "k4", big)
	sizes := map[int64][]int{}
	frags := map[int64][]bool{}
	for len(sizes[0]) < 2 || len(sizes[1]) < 1 {
		resp := w.recv()
		if resp.Header.Revision != rev {
			t.Fatalf("header revision %d", resp.Header.Revision)
		}
		sizes[resp.WatchId] = append(sizes[resp.WatchId], len(resp.Events))
		frags[resp.WatchId] = append(frags[resp.WatchId], resp.Fragment)
	}
	if got := sizes[0]; len(got) != 2 || got[0] != 2 || got[1] != 2 || !frags[0][0] || frags[0][1] {
		t.Fatalf("fragmented watcher: events %v, fragment flags %v", got, frags[0])
	}
	if got := sizes[1]; len(got) != 1 || got[0] != 4 || frags[1][0] {
		t.Fatalf("plain watcher: events %v, fragment flags %v", got, frags[1])
	}
}

func TestWatchProgressNotify(t *testing.T) {
	clock := clockwork.NewFakeClock()
	const interval = time.Second
	s := startWatchTestServer(t, func(c *Config) {
		c.Clock = clock
		c.WatchProgressNotifyInterval = interval
	})
	w := openRawWatch(t, s)
	w.create(&pb.WatchCreateRequest{Key: []byte("a"), ProgressNotify: true})
	w.expect(&pb.WatchResponse{Header: watchHdr(1), WatchId: 0, Created: true})
	// b never gets events: its notification marks every tick.
	w.create(&pb.WatchCreateRequest{Key: []byte("b"), ProgressNotify: true})
	w.expect(&pb.WatchResponse{Header: watchHdr(1), WatchId: 1, Created: true})
	w.create(&pb.WatchCreateRequest{Key: []byte("c")})
	w.expect(&pb.WatchResponse{Header: watchHdr(1), WatchId: 2, Created: true})

	// tick advances past one period (jitter included) and returns the IDs
	// notified, read up to b's notification and a WatchProgressRequest
	// issued after it, which is ordered after everything of that tick.
	tick := func() map[int64]int64 {
		t.Helper()
		// The stream's ticker exists: it sent the created responses.
		clock.Advance(interval + interval/10)
		got := map[int64]int64{}
		for {
			resp := w.recv()
			if len(resp.Events) != 0 || resp.Created || resp.Canceled {
				t.Fatalf("unexpected %v", resp)
			}
			if resp.WatchId == -1 {
				return got
			}
			got[resp.WatchId] = resp.Header.Revision
			if resp.WatchId == 1 {
				w.progress()
			}
		}
	}

	if got := tick(); len(got) != 2 || got[0] != 1 || got[1] != 1 {
		t.Fatalf("first tick notified %v, want a and b at 1", got)
	}
	rev := watchTestPut(t, s, "a", "1")
	if resp := w.recv(); resp.WatchId != 0 || len(resp.Events) != 1 {
		t.Fatalf("want a's event, got %v", resp)
	}
	// a had an event during the period: its notification is elided once.
	if got := tick(); len(got) != 1 || got[1] != rev {
		t.Fatalf("second tick notified %v, want b only", got)
	}
	if got := tick(); len(got) != 2 || got[0] != rev || got[1] != rev {
		t.Fatalf("third tick notified %v, want a and b at %d", got, rev)
	}
}

func TestWatchClientv3(t *testing.T) {
	s := startWatchTestServer(t, nil)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{watchTestAddr(s)},
		DialTimeout: watchTestWait,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), watchTestWait)
	defer cancel()

	first := watchTestPut(t, s, "k1", "a")
	watchTestPut(t, s, "k2", "b")
	wch := cli.Watch(ctx, "k", clientv3.WithPrefix(), clientv3.WithRev(first), clientv3.WithPrevKV())
	live := cli.Watch(ctx, "k1", clientv3.WithProgressNotify())
	last := watchTestPut(t, s, "k1", "c")

	var evs []*clientv3.Event
	for len(evs) < 3 {
		resp, ok := <-wch
		if !ok || resp.Err() != nil {
			t.Fatalf("watch ended: %v", resp.Err())
		}
		evs = append(evs, resp.Events...)
	}
	if len(evs) != 3 || string(evs[2].Kv.Value) != "c" || evs[2].PrevKv == nil || string(evs[2].PrevKv.Value) != "a" {
		t.Fatalf("events %v", evs)
	}
	resp := <-live
	if len(resp.Events) != 1 || resp.Events[0].Kv.ModRevision != last {
		t.Fatalf("live watch got %v", resp)
	}

	// A progress request is answered to every watcher of the stream.
	if err := cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []clientv3.WatchChan{wch, live} {
		resp := <-ch
		if !resp.IsProgressNotify() || resp.Header.Revision != last {
			t.Fatalf("want progress at %d, got %+v", last, resp)
		}
	}
}

func TestWatchEndsOnClose(t *testing.T) {
	s := startWatchTestServer(t, nil)
	w := openRawWatch(t, s)
	w.create(&pb.WatchCreateRequest{Key: []byte("a")})
	w.recv()

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-w.errc:
		if st, _ := status.FromError(err); st.Code() != codes.Unavailable {
			t.Fatalf("stream ended with %v, want Unavailable", err)
		}
	case <-time.After(watchTestWait):
		t.Fatal("watch stream still open after Close")
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(closeTimeout):
		t.Fatal("Close waited for the watch stream")
	}
}
