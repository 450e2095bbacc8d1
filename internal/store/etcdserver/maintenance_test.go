package etcdserver

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMaintenance(t *testing.T) {
	s := startServer(t, testConfig(t))
	conn := newClient(t, s).ActiveConnection()
	m, kv := pb.NewMaintenanceClient(conn), pb.NewKVClient(conn)
	ctx := testCtx(t)
	for _, k := range []string{"a", "b", "c"} {
		if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte(k)}); err != nil {
			t.Fatal(err)
		}
	}

	st, err := m.Status(ctx, &pb.StatusRequest{})
	wantStatus(t, "status", err, nil)
	if st.Version != version.Version || st.Leader != s.memberID || st.Header.Revision != 4 || st.RaftIndex < 3 ||
		st.RaftIndex != st.RaftAppliedIndex || st.DbSize <= 0 || st.DbSizeInUse <= 0 || st.DbSizeInUse > st.DbSize ||
		st.IsLearner || len(st.Errors) != 0 || st.DbSizeQuota != defaultQuotaBytes || st.StorageVersion != "3.7.0" {
		t.Fatalf("status = %v", st)
	}

	h, err := m.Hash(ctx, &pb.HashRequest{})
	wantStatus(t, "hash", err, nil)
	if h.Header.Revision != 4 {
		t.Fatalf("hash = %v", h)
	}
	hkv, err := m.HashKV(ctx, &pb.HashKVRequest{Revision: 3})
	wantStatus(t, "hashkv", err, nil)
	if hkv.HashRevision != 3 || hkv.CompactRevision != -1 || hkv.Header.Revision != 4 {
		t.Fatalf("hashkv = %v", hkv)
	}
	_, err = m.HashKV(ctx, &pb.HashKVRequest{Revision: 50})
	wantStatus(t, "hashkv future", err, rpctypes.ErrGRPCFutureRev)

	// After a compaction, HashKV at its revision is the hash from before.
	if _, err := kv.Compact(ctx, &pb.CompactionRequest{Revision: 3, Physical: true}); err != nil {
		t.Fatal(err)
	}
	at3, err := m.HashKV(ctx, &pb.HashKVRequest{Revision: 3})
	wantStatus(t, "hashkv at compaction", err, nil)
	if at3.Hash != hkv.Hash || at3.CompactRevision != -1 {
		t.Fatalf("hashkv at the compaction revision = %v, want %v", at3, hkv)
	}
	at4, err := m.HashKV(ctx, &pb.HashKVRequest{})
	wantStatus(t, "hashkv latest", err, nil)
	if at4.CompactRevision != 3 || at4.HashRevision != 4 {
		t.Fatalf("hashkv latest = %v", at4)
	}

	d, err := m.Defragment(ctx, &pb.DefragmentRequest{})
	wantStatus(t, "defragment", err, nil)
	if d.Header != nil {
		t.Fatalf("defragment has a header: %v", d)
	}

	_, err = m.MoveLeader(ctx, &pb.MoveLeaderRequest{TargetID: s.memberID + 1})
	wantStatus(t, "move leader elsewhere", err, rpctypes.ErrGRPCBadLeaderTransferee)
	if _, err := m.MoveLeader(ctx, &pb.MoveLeaderRequest{TargetID: s.memberID}); err != nil {
		t.Fatalf("move leader to itself: %v", err)
	}
	if _, err := m.Downgrade(ctx, &pb.DowngradeRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("downgrade: %v", err)
	}
}

func TestSnapshot(t *testing.T) {
	s := startServer(t, testConfig(t))
	c := newClient(t, s)
	ctx := testCtx(t)
	for i := range 50 {
		if _, err := c.Put(ctx, "key", string(bytes.Repeat([]byte{byte(i)}, 4096))); err != nil {
			t.Fatal(err)
		}
	}

	stream, err := pb.NewMaintenanceClient(c.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*pb.SnapshotResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, r)
	}
	if len(msgs) < 3 {
		t.Fatalf("%d messages, want several chunks and a checksum", len(msgs))
	}
	var data []byte
	for _, r := range msgs[:len(msgs)-1] {
		if len(r.Blob) > snapshotChunkSize || r.Header != nil {
			t.Fatalf("chunk of %d bytes, header %v", len(r.Blob), r.Header)
		}
		data = append(data, r.Blob...)
	}
	sent := 0
	for _, r := range msgs[:len(msgs)-1] {
		sent += len(r.Blob)
		if r.RemainingBytes != uint64(len(data)-sent) {
			t.Fatalf("remaining bytes %d after %d of %d", r.RemainingBytes, sent, len(data))
		}
	}
	sum := sha256.Sum256(data)
	last := msgs[len(msgs)-1]
	if !bytes.Equal(last.Blob, sum[:]) || last.RemainingBytes != 0 {
		t.Fatal("last message is not the sha256 of the snapshot")
	}
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("snapshot is not a bbolt database: %v", err)
	}
	_ = db.Close()

	// etcd's client library saves and checks it.
	saved := filepath.Join(t.TempDir(), "saved.db")
	cfg := clientv3.Config{Endpoints: s.ClientURLs()[:1]}
	if _, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), cfg, saved); err != nil {
		t.Fatalf("snapshot.SaveWithVersion: %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(s.cfg.DataDir, "member"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("snapshot staging files left behind: %v", entries)
	}
}

func TestAlarms(t *testing.T) {
	s := startServer(t, testConfig(t))
	conn := newClient(t, s).ActiveConnection()
	m, kv, ls := pb.NewMaintenanceClient(conn), pb.NewKVClient(conn), pb.NewLeaseClient(conn)
	ctx := testCtx(t)
	alarm := func(action pb.AlarmRequest_AlarmAction, typ pb.AlarmType) *pb.AlarmResponse {
		t.Helper()
		r, err := m.Alarm(ctx, &pb.AlarmRequest{Action: action, MemberID: s.memberID, Alarm: typ})
		if err != nil {
			t.Fatalf("alarm %v %v: %v", action, typ, err)
		}
		if r.Header.Revision != 1 {
			t.Fatalf("alarm header = %v", r.Header)
		}
		return r
	}
	if r := alarm(pb.AlarmRequest_GET, pb.AlarmType_NONE); len(r.Alarms) != 0 {
		t.Fatalf("alarms at start: %v", r)
	}
	if r := alarm(pb.AlarmRequest_DEACTIVATE, pb.AlarmType_NOSPACE); len(r.Alarms) != 0 {
		t.Fatalf("deactivating no alarm: %v", r)
	}
	if r := alarm(pb.AlarmRequest_ACTIVATE, pb.AlarmType_NONE); len(r.Alarms) != 0 {
		t.Fatalf("activating NONE: %v", r)
	}
	if r := alarm(pb.AlarmRequest_ACTIVATE, pb.AlarmType_NOSPACE); len(r.Alarms) != 1 || r.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("activate: %v", r)
	}
	if r := alarm(pb.AlarmRequest_GET, pb.AlarmType_NONE); len(r.Alarms) != 1 {
		t.Fatalf("get: %v", r)
	}
	if r := alarm(pb.AlarmRequest_GET, pb.AlarmType_CORRUPT); len(r.Alarms) != 0 {
		t.Fatalf("get CORRUPT: %v", r)
	}
	st, _ := m.Status(ctx, &pb.StatusRequest{})
	if len(st.Errors) != 1 {
		t.Fatalf("status errors = %v", st.Errors)
	}

	// With NOSPACE raised, what grows the database is refused.
	_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k")})
	wantStatus(t, "put under NOSPACE", err, rpctypes.ErrGRPCNoSpace)
	_, err = kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{opPut("k")}})
	wantStatus(t, "txn put under NOSPACE", err, rpctypes.ErrGRPCNoSpace)
	_, err = ls.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 10})
	wantStatus(t, "grant under NOSPACE", err, rpctypes.ErrGRPCNoSpace)
	_, err = kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{opDel("k", "")}})
	wantStatus(t, "txn delete under NOSPACE", err, nil)
	_, err = kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("k")})
	wantStatus(t, "delete under NOSPACE", err, nil)

	alarm(pb.AlarmRequest_ACTIVATE, pb.AlarmType_CORRUPT)
	_, err = kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("k")})
	wantStatus(t, "delete under CORRUPT", err, rpctypes.ErrGRPCCorrupt)
	_, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("k")})
	wantStatus(t, "range under CORRUPT", err, nil)

	alarm(pb.AlarmRequest_DEACTIVATE, pb.AlarmType_CORRUPT)
	if r := alarm(pb.AlarmRequest_DEACTIVATE, pb.AlarmType_NOSPACE); len(r.Alarms) != 1 {
		t.Fatalf("deactivate: %v", r)
	}
	_, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("k")})
	wantStatus(t, "put after the alarm", err, nil)
}
