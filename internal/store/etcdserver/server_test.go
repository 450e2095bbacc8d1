package etcdserver

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// wantStatus fails unless err is the gRPC error want (same code and message).
func wantStatus(t *testing.T, what string, err, want error) {
	t.Helper()
	got, want2 := status.Convert(err), status.Convert(want)
	if want == nil {
		if err != nil {
			t.Fatalf("%s: unexpected error %v", what, err)
		}
		return
	}
	if got.Code() != want2.Code() || got.Message() != want2.Message() {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func TestStartRejectsURLs(t *testing.T) {
	tests := []struct {
		url  string
		want string
	}{
		{"https://127.0.0.1:0", "TLS is not supported"},
		{"unix://foo", "unix sockets are not supported"},
		{"unixs://foo", "TLS is not supported"},
		{"http://127.0.0.1:0/path", "no user, path or query"},
		{"http://127.0.0.1", "missing port"},
		{"ftp://127.0.0.1:0", "want http://host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.ListenClientURLs = []string{tt.url}
			s, err := Start(cfg)
			if err == nil {
				_ = s.Close()
				t.Fatal("Start accepted the URL")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(cfg.DataDir, "member")); !os.IsNotExist(err) {
				t.Fatal("Start touched the data dir before validating its URLs")
			}
		})
	}
}

func TestStartListensEverywhere(t *testing.T) {
	cfg := testConfig(t)
	cfg.ListenClientURLs = []string{"http://127.0.0.1:0", "http://127.0.0.1:0"}
	s := startServer(t, cfg)
	urls := s.ClientURLs()
	if len(urls) != 2 || urls[0] == urls[1] {
		t.Fatalf("ClientURLs = %v", urls)
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, "http://127.0.0.1:") || strings.HasSuffix(u, ":0") {
			t.Fatalf("unresolved client URL %q", u)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "member", "herd.db")); err != nil {
		t.Fatalf("database not in DataDir/member: %v", err)
	}
	ctx := testCtx(t)
	for _, u := range urls {
		if _, err := dial(t, u).Put(ctx, "k", u); err != nil {
			t.Fatalf("put via %s: %v", u, err)
		}
	}
}

func TestKVService(t *testing.T) {
	s := startServer(t, testConfig(t))
	kv := pb.NewKVClient(newClient(t, s).ActiveConnection())
	ctx := testCtx(t)
	hdr := func(rev int64) *pb.ResponseHeader { return s.header(rev) }

	// A fresh store is at revision 1, as etcd's.
	resp, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a")})
	wantStatus(t, "empty range", err, nil)
	if resp.Header.Revision != 1 || resp.Header.ClusterId != s.clusterID || resp.Header.MemberId != s.memberID || resp.Header.RaftTerm != 1 {
		t.Fatalf("header = %v", resp.Header)
	}

	put, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("1")})
	wantStatus(t, "put", err, nil)
	if put.Header.Revision != 2 || put.PrevKv != nil {
		t.Fatalf("put = %v", put)
	}
	put, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("2"), PrevKv: true})
	wantStatus(t, "put prev_kv", err, nil)
	wantPrev := &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1}
	if put.Header.Revision != 3 || !proto.Equal(put.PrevKv, wantPrev) {
		t.Fatalf("put = %v", put)
	}

	errTests := []struct {
		name string
		call func() error
		want error
	}{
		{"range empty key", func() error { _, err := kv.Range(ctx, &pb.RangeRequest{}); return err }, rpctypes.ErrGRPCEmptyKey},
		{"range bad sort", func() error {
			_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), SortTarget: 9})
			return err
		}, rpctypes.ErrGRPCInvalidSortOption},
		{"range future", func() error { _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Revision: 99}); return err }, rpctypes.ErrGRPCFutureRev},
		{"put empty key", func() error { _, err := kv.Put(ctx, &pb.PutRequest{}); return err }, rpctypes.ErrGRPCEmptyKey},
		{"put missing lease", func() error { _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), Lease: 5}); return err }, rpctypes.ErrGRPCLeaseNotFound},
		{"put ignore value of missing key", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("zz"), IgnoreValue: true})
			return err
		}, rpctypes.ErrGRPCKeyNotFound},
		{"put ignore value with value", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("x"), IgnoreValue: true})
			return err
		}, rpctypes.ErrGRPCValueProvided},
		{"delete empty key", func() error { _, err := kv.DeleteRange(ctx, &pb.DeleteRangeRequest{}); return err }, rpctypes.ErrGRPCEmptyKey},
		{"txn duplicate key", func() error {
			_, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{opPut("k"), opPut("k")}})
			return err
		}, rpctypes.ErrGRPCDuplicateKey},
		{"txn too many ops", func() error {
			_, err := kv.Txn(ctx, &pb.TxnRequest{Success: ops(DefaultMaxTxnOps+1, func(int) *pb.RequestOp { return opGet("a", "") })})
			return err
		}, rpctypes.ErrGRPCTooManyOps},
		{"compact future", func() error { _, err := kv.Compact(ctx, &pb.CompactionRequest{Revision: 99}); return err }, rpctypes.ErrGRPCFutureRev},
		{"compact negative", func() error { _, err := kv.Compact(ctx, &pb.CompactionRequest{Revision: -1}); return err }, rpctypes.ErrGRPCCompacted},
	}
	for _, tt := range errTests {
		wantStatus(t, tt.name, tt.call(), tt.want)
	}
	// Failed requests change nothing.
	resp, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Serializable: true})
	wantStatus(t, "range", err, nil)
	if resp.Header.Revision != 3 || resp.Count != 1 || string(resp.Kvs[0].Value) != "2" {
		t.Fatalf("range = %v", resp)
	}

	// ignore_value keeps the value; the key's version still moves.
	put, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), IgnoreValue: true})
	wantStatus(t, "put ignore value", err, nil)
	resp, _ = kv.Range(ctx, &pb.RangeRequest{Key: []byte("a")})
	if put.Header.Revision != 4 || string(resp.Kvs[0].Value) != "2" || resp.Kvs[0].Version != 3 {
		t.Fatalf("after ignore_value: %v", resp)
	}

	for _, k := range []string{"b", "c", "d"} {
		if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte(k)}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), Limit: 2, SortOrder: pb.RangeRequest_DESCEND})
	wantStatus(t, "sorted range", err, nil)
	if keysOf(resp.Kvs) != "dc" || !resp.More || resp.Count != 4 || resp.Header.Revision != 7 {
		t.Fatalf("sorted range = %v", resp)
	}

	del, err := kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte("d"), PrevKv: true})
	wantStatus(t, "delete", err, nil)
	if del.Deleted != 2 || keysOf(del.PrevKvs) != "bc" || del.Header.Revision != 8 {
		t.Fatalf("delete = %v", del)
	}
	del, err = kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("nothing")})
	wantStatus(t, "empty delete", err, nil)
	if del.Deleted != 0 || del.Header.Revision != 8 {
		t.Fatalf("empty delete = %v, want revision unchanged", del)
	}

	txn, err := kv.Txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{versionIs("a", 3)},
		Success: []*pb.RequestOp{opPut("t"), opGet("t", "")},
		Failure: []*pb.RequestOp{opGet("a", "")},
	})
	wantStatus(t, "txn", err, nil)
	if !txn.Succeeded || txn.Header.Revision != 9 || txn.Responses[1].GetResponseRange().Count != 1 {
		t.Fatalf("txn = %v", txn)
	}
	if got := txn.Responses[0].GetResponsePut().Header; got.Revision != 9 || got.MemberId != 0 {
		t.Fatalf("nested header = %v, want only the revision", got)
	}
	txn, err = kv.Txn(ctx, &pb.TxnRequest{Compare: []*pb.Compare{versionIs("a", 1)}, Failure: []*pb.RequestOp{opGet("a", "")}})
	wantStatus(t, "read-only txn", err, nil)
	if txn.Succeeded || !proto.Equal(txn.Header, hdr(9)) {
		t.Fatalf("read-only txn = %v", txn)
	}
}

func TestCompact(t *testing.T) {
	s := startServer(t, testConfig(t))
	kv := pb.NewKVClient(newClient(t, s).ActiveConnection())
	ctx := testCtx(t)
	for i := range 5 {
		if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte{byte('0' + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// etcd accepts a compaction at 0 once, on a store never compacted.
	_, err := kv.Compact(ctx, &pb.CompactionRequest{Revision: 0})
	wantStatus(t, "compact 0", err, nil)
	_, err = kv.Compact(ctx, &pb.CompactionRequest{Revision: 0})
	wantStatus(t, "compact 0 again", err, rpctypes.ErrGRPCCompacted)

	resp, err := kv.Compact(ctx, &pb.CompactionRequest{Revision: 4, Physical: true})
	wantStatus(t, "compact", err, nil)
	if resp.Header.Revision != 6 {
		t.Fatalf("compact header = %v, want the current revision", resp.Header)
	}
	_, err = kv.Compact(ctx, &pb.CompactionRequest{Revision: 4})
	wantStatus(t, "compact again", err, rpctypes.ErrGRPCCompacted)
	_, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Revision: 3})
	wantStatus(t, "range below compaction", err, rpctypes.ErrGRPCCompacted)
	got, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Revision: 4})
	wantStatus(t, "range at compaction", err, nil)
	if string(got.Kvs[0].Value) != "2" {
		t.Fatalf("range at 4 = %v", got)
	}
	_, err = kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k"), Revision: -1}}}}})
	wantStatus(t, "txn range at -1 after compaction", err, rpctypes.ErrGRPCCompacted)
}

func TestRequestTooLarge(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxRequestBytes = 1024
	s := startServer(t, cfg)
	kv := pb.NewKVClient(newClient(t, s).ActiveConnection())
	ctx := testCtx(t)
	_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: make([]byte, 1000)})
	wantStatus(t, "put under the limit", err, nil)
	_, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: make([]byte, 1024)})
	wantStatus(t, "put over the limit", err, rpctypes.ErrGRPCRequestTooLarge)
	_, err = kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Value: make([]byte, 1024)}}}}})
	wantStatus(t, "txn over the limit", err, rpctypes.ErrGRPCRequestTooLarge)
	// Reads do not go through raft: only gRPC's limit applies.
	_, err = kv.Range(ctx, &pb.RangeRequest{Key: make([]byte, 2048)})
	wantStatus(t, "large range", err, nil)
	_, err = kv.Range(ctx, &pb.RangeRequest{Key: make([]byte, 1024+grpcOverheadBytes)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("request above the gRPC limit: %v", err)
	}
}

func TestRangeStream(t *testing.T) {
	s := startServer(t, testConfig(t))
	c := newClient(t, s)
	ctx := testCtx(t)
	for i := range 30 {
		if _, err := c.Put(ctx, string(rune('a'+i%26))+string(rune('a'+i/26)), "v"); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := c.GetStream(ctx, "a", clientv3.WithFromKey(), clientv3.WithLimit(25))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := clientv3.GetStreamToGetResponse(stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 25 || resp.Count != 30 || !resp.More || resp.Header.Revision != 31 || resp.Header.MemberId != s.memberID {
		t.Fatalf("stream = count %d more %v kvs %d header %v", resp.Count, resp.More, len(resp.Kvs), resp.Header)
	}
	stream, err = c.GetStream(ctx, "a", clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend))
	if err == nil {
		_, err = clientv3.GetStreamToGetResponse(stream)
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("sorted stream: %v", err)
	}
}

func TestClusterAuthHealth(t *testing.T) {
	cfg := testConfig(t)
	cfg.AdvertiseClientURLs = []string{"http://store.example:2379"}
	s := startServer(t, cfg)
	c := newClient(t, s)
	ctx := testCtx(t)

	ml, err := c.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := ml.Members
	if len(m) != 1 || m[0].ID != s.memberID || m[0].Name != "test" || len(m[0].PeerURLs) != 0 ||
		strings.Join(m[0].ClientURLs, ",") != "http://store.example:2379" || ml.Header.Revision != 0 {
		t.Fatalf("MemberList = %v", ml)
	}
	if _, err := c.MemberAdd(ctx, []string{"http://10.0.0.2:2380"}); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), "not supported on a single node") {
		t.Fatalf("MemberAdd: %v", err)
	}
	if _, err := c.MemberRemove(ctx, s.memberID); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("MemberRemove: %v", err)
	}

	as, err := c.AuthStatus(ctx)
	if err != nil || as.Enabled {
		t.Fatalf("AuthStatus = %v, %v", as, err)
	}
	_, err = pb.NewAuthClient(c.ActiveConnection()).Authenticate(ctx, &pb.AuthenticateRequest{Name: "root", Password: "x"})
	wantStatus(t, "authenticate", err, rpctypes.ErrGRPCAuthNotEnabled)

	h, err := healthpb.NewHealthClient(c.ActiveConnection()).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", h, err)
	}
}

func TestRestart(t *testing.T) {
	cfg := testConfig(t)
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s)
	ctx := testCtx(t)
	l, err := c.Grant(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", "v", clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	member := s.memberID
	_ = c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s = startServer(t, cfg)
	if s.memberID != member {
		t.Fatal("member ID changed across a restart")
	}
	c = newClient(t, s)
	got, err := c.Get(ctx, "k")
	if err != nil || len(got.Kvs) != 1 || got.Kvs[0].Lease != int64(l.ID) || got.Header.Revision != 2 {
		t.Fatalf("after restart: %v, %v", got, err)
	}
	ttl, err := c.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.GrantedTTL != 100 || ttl.TTL < 99 || len(ttl.Keys) != 1 {
		t.Fatalf("lease after restart: %v, %v", ttl, err)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	s, err := Start(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s)
	ctx := testCtx(t)
	l, err := c.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := pb.NewLeaseClient(c.ActiveConnection()).LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(l.ID)}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= closeTimeout {
		t.Fatalf("Close waited %v for an open keepalive stream", d)
	}
	if _, err := stream.Recv(); err == nil || err == io.EOF {
		t.Fatalf("keepalive stream still open after Close: %v", err)
	}
}
