package etcdserver

import (
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herd-project/herd/internal/store/mvcc"
)

// FuzzRangeRequest drives range validation and every range option through
// executeRange. It must never panic, and what passes validation must answer
// within the request's limit.
func FuzzRangeRequest(f *testing.F) {
	type seed struct {
		key, end                             []byte
		limit, rev                           int64
		order, target                        int32
		keysOnly, countOnly                  bool
		minMod, maxMod, minCreate, maxCreate int64
	}
	for _, s := range []seed{
		{key: []byte("a")},
		{key: []byte("a"), end: []byte("\x00"), limit: 2},
		{key: []byte("\x00"), end: []byte("\x00"), order: 2, target: 3, limit: 3},
		{key: []byte("b"), end: []byte("d"), order: 1, target: 4, keysOnly: true},
		{key: []byte("a"), end: []byte("\x00"), target: 2, limit: 1},
		{key: []byte("a"), end: []byte("\x00"), countOnly: true, limit: 1},
		{key: []byte("a"), end: []byte("\x00"), minMod: 4, maxMod: 7, minCreate: 2, maxCreate: 5, limit: 2},
		{key: []byte("z"), end: []byte("a")},
		{key: []byte("a"), rev: -3},
		{key: []byte("a"), rev: 100},
		{key: []byte("a"), limit: math.MaxInt64},
		{key: []byte("a"), limit: math.MinInt64, order: -1},
		{key: nil, order: 7, target: 9},
	} {
		f.Add(s.key, s.end, s.limit, s.rev, s.order, s.target, s.keysOnly, s.countOnly, s.minMod, s.maxMod, s.minCreate, s.maxCreate)
	}
	engine := engineFixture(f)
	f.Fuzz(func(t *testing.T, key, end []byte, limit, rev int64, order, target int32, keysOnly, countOnly bool, minMod, maxMod, minCreate, maxCreate int64) {
		r := &pb.RangeRequest{
			Key: key, RangeEnd: end, Limit: limit, Revision: rev,
			SortOrder: pb.RangeRequest_SortOrder(order), SortTarget: pb.RangeRequest_SortTarget(target),
			KeysOnly: keysOnly, CountOnly: countOnly,
			MinModRevision: minMod, MaxModRevision: maxMod, MinCreateRevision: minCreate, MaxCreateRevision: maxCreate,
		}
		_ = checkRangeStreamRequest(r)
		err := checkRangeRequest(r)
		if err != nil {
			if _, ok := status.FromError(err); !ok {
				t.Fatalf("validation error is not a gRPC error: %v", err)
			}
		}
		// Run invalid requests too: the code must be safe on its own.
		resp, rerr := executeRange(rangeFixture(), r)
		rt := engine.Read()
		eresp, eerr := executeRange(rt, r)
		rt.End()
		// The stand-in keeps no history: compare where that does not matter.
		if rev <= 0 || rev >= 8 {
			if (rerr == nil) != (eerr == nil) {
				t.Fatalf("engine error %v, stand-in error %v", eerr, rerr)
			}
			if rerr == nil && !proto.Equal(resp, eresp) {
				t.Fatalf("engine answered\n%v\nstand-in answered\n%v", eresp, resp)
			}
		}
		if err != nil || rerr != nil {
			return
		}
		if limit > 0 && int64(len(resp.Kvs)) > limit {
			t.Fatalf("%d KVs for limit %d", len(resp.Kvs), limit)
		}
		if resp.More && limit <= 0 {
			t.Fatal("more without a limit")
		}
		if countOnly && len(resp.Kvs) != 0 {
			t.Fatal("KVs in a count_only response")
		}
		if int64(len(resp.Kvs)) > resp.Count {
			t.Fatalf("%d KVs but count %d", len(resp.Kvs), resp.Count)
		}
	})
}

// engineFixture is rangeFixture in a real engine.
func engineFixture(f *testing.F) *mvcc.Store {
	st, err := mvcc.Open(filepath.Join(f.TempDir(), "fuzz.db"), mvcc.Options{NoSync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	w := st.Write()
	if err := w.GrantLease(5, 100); err != nil {
		f.Fatal(err)
	}
	if err := w.End(); err != nil {
		f.Fatal(err)
	}
	for _, p := range []struct {
		k, v  string
		lease int64
	}{{"a", "x", 0}, {"b", "1", 5}, {"c", "x", 0}, {"d", "2", 0}, {"e", "0", 5}, {"a", "3", 0}, {"c", "1", 0}} {
		w := st.Write()
		if err := w.Put([]byte(p.k), []byte(p.v), p.lease); err != nil {
			f.Fatal(err)
		}
		if err := w.End(); err != nil {
			f.Fatal(err)
		}
	}
	return st
}

// FuzzTxnRequest decodes a TxnRequest from the wire and runs the checks
// (op limits, empty keys, duplicate keys), compare evaluation and execution
// on an in-memory store. It must never panic, and a txn that fails must
// change nothing.
func FuzzTxnRequest(f *testing.F) {
	putOp := func(p *pb.PutRequest) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: p}}
	}
	for _, r := range []*pb.TxnRequest{
		{},
		{Compare: []*pb.Compare{versionIs("a", 2)}, Success: []*pb.RequestOp{opPut("x"), opGet("a", "\x00")}, Failure: []*pb.RequestOp{opDel("a", "c")}},
		{Success: []*pb.RequestOp{opPut("k"), opPut("k")}},
		{Success: []*pb.RequestOp{opDel("a", "z"), opTxn(nil, []*pb.RequestOp{opPut("k")}, []*pb.RequestOp{opPut("k")})}},
		{Success: []*pb.RequestOp{opTxn([]*pb.Compare{versionIs("zz", 0)}, []*pb.RequestOp{opTxn(nil, []*pb.RequestOp{opGet("a", "")}, nil)}, nil)}},
		{Success: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("b"), IgnoreValue: true, IgnoreLease: true, PrevKv: true})}},
		{Success: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("n"), IgnoreValue: true})}},
		{Success: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("n"), Lease: 77})}},
		{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: 99}}}}},
		{Compare: []*pb.Compare{{Key: []byte("a"), RangeEnd: []byte("\x00"), Target: pb.Compare_VALUE, Result: pb.Compare_GREATER}}, Failure: []*pb.RequestOp{{}}},
		{Compare: []*pb.Compare{{Key: []byte("b"), Target: pb.Compare_LEASE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Lease{Lease: 5}}}, Success: []*pb.RequestOp{opDel("b", "")}},
	} {
		data, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, int64(-1))
	}
	f.Add([]byte{0x12, 0x02, 0x22, 0x00}, int64(4)) // a success op holding an empty nested txn
	f.Fuzz(func(t *testing.T, data []byte, firstRev int64) {
		r := &pb.TxnRequest{}
		if err := proto.Unmarshal(data, r); err != nil {
			return
		}
		valid := checkTxnRequest(r, 16) == nil
		if valid {
			_, _, err1 := checkIntervals(r.Success)
			_, _, err2 := checkIntervals(r.Failure)
			valid = err1 == nil && err2 == nil
		}
		_ = isTxnReadonly(r)
		_ = txnCost(r)

		m := rangeFixture()
		before := m.Rev()
		resp, err := runTxn(m, r, firstRev)
		if err != nil {
			if m.changed {
				t.Fatalf("failed txn changed the store: %v", err)
			}
			return
		}
		if !valid {
			return
		}
		if resp.Header.Revision != m.Rev() || (m.Rev() != before && m.Rev() != before+1) {
			t.Fatalf("revision %d after %d, header %d", m.Rev(), before, resp.Header.Revision)
		}
	})
}
