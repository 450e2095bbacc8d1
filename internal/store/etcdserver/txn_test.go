package etcdserver

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"
)

func TestCompareKV(t *testing.T) {
	kv := &mvccpb.KeyValue{Key: []byte("k"), Value: []byte("m"), CreateRevision: 5, ModRevision: 7, Version: 2, Lease: 9}
	val := func(r pb.Compare_CompareResult, v string) *pb.Compare {
		return &pb.Compare{Target: pb.Compare_VALUE, Result: r, TargetUnion: &pb.Compare_Value{Value: []byte(v)}}
	}
	tests := []struct {
		name string
		c    *pb.Compare
		want bool
	}{
		{"value equal", val(pb.Compare_EQUAL, "m"), true},
		{"value not equal", val(pb.Compare_NOT_EQUAL, "m"), false},
		{"value greater", val(pb.Compare_GREATER, "a"), true},
		{"value less", val(pb.Compare_LESS, "z"), true},
		{"value less false", val(pb.Compare_LESS, "a"), false},
		{"version equal", &pb.Compare{Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Version{Version: 2}}, true},
		{"create greater", &pb.Compare{Target: pb.Compare_CREATE, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 4}}, true},
		{"mod less", &pb.Compare{Target: pb.Compare_MOD, Result: pb.Compare_LESS, TargetUnion: &pb.Compare_ModRevision{ModRevision: 7}}, false},
		{"lease not equal", &pb.Compare{Target: pb.Compare_LEASE, Result: pb.Compare_NOT_EQUAL, TargetUnion: &pb.Compare_Lease{Lease: 9}}, false},
		// A union that does not match the target compares against zero.
		{"mismatched union", &pb.Compare{Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Lease{Lease: 100}}, true},
		{"no union value", &pb.Compare{Target: pb.Compare_VALUE, Result: pb.Compare_GREATER}, true},
		// Unknown results are true; unknown targets compare equal.
		{"unknown result", &pb.Compare{Target: pb.Compare_MOD, Result: 42}, true},
		{"unknown target", &pb.Compare{Target: 42, Result: pb.Compare_EQUAL}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := compareKV(tt.c, kv); got != tt.want {
				t.Fatalf("compareKV = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestApplyCompare(t *testing.T) {
	m := rangeFixture()
	ver := func(key, end string, r pb.Compare_CompareResult, v int64) *pb.Compare {
		c := &pb.Compare{Key: []byte(key), Target: pb.Compare_VERSION, Result: r, TargetUnion: &pb.Compare_Version{Version: v}}
		if end != "" {
			c.RangeEnd = []byte(end)
		}
		return c
	}
	tests := []struct {
		name string
		c    *pb.Compare
		want bool
	}{
		{"existing key", ver("a", "", pb.Compare_EQUAL, 2), true},
		{"missing key has version 0", ver("zz", "", pb.Compare_EQUAL, 0), true},
		{"missing key value always fails", &pb.Compare{Key: []byte("zz"), Target: pb.Compare_VALUE, Result: pb.Compare_NOT_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("x")}}, false},
		{"range all match", ver("a", "\x00", pb.Compare_GREATER, 0), true},
		{"range one fails", ver("a", "\x00", pb.Compare_EQUAL, 1), false},
		{"range subset", ver("d", "f", pb.Compare_EQUAL, 1), true},
		{"empty range compares zero", ver("x", "y", pb.Compare_LESS, 1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := applyCompare(m, tt.c); got != tt.want {
				t.Fatalf("applyCompare = %v, want %v", got, tt.want)
			}
		})
	}
}

func versionIs(key string, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(key), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Version{Version: v}}
}

func TestRunTxnPathsAndRevisions(t *testing.T) {
	m := rangeFixture() // revision 8
	r := &pb.TxnRequest{
		Compare: []*pb.Compare{versionIs("a", 2)},
		Success: []*pb.RequestOp{
			opGet("a", ""),
			// Fails: its else branch runs, itself with a nested txn.
			opTxn([]*pb.Compare{versionIs("b", 7)}, []*pb.RequestOp{opPut("never")}, []*pb.RequestOp{
				opPut("x"),
				// Compares run before any op: x does not exist yet.
				opTxn([]*pb.Compare{versionIs("x", 0)}, []*pb.RequestOp{opGet("x", "")}, nil),
			}),
			opTxn(nil, []*pb.RequestOp{opDel("nothing", "")}, nil),
			opDel("d", ""),
			opGet("a", "\x00"),
		},
		Failure: []*pb.RequestOp{opPut("never")},
	}
	resp, err := runTxn(m, r, -1)
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.TxnResponse{
		Header:    &pb.ResponseHeader{Revision: 9},
		Succeeded: true,
		Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{
				Header: &pb.ResponseHeader{Revision: 8}, Count: 1,
				Kvs: []*mvccpb.KeyValue{{Key: []byte("a"), Value: []byte("3"), CreateRevision: 2, ModRevision: 7, Version: 2}},
			}}},
			{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{
				Header: &pb.ResponseHeader{},
				Responses: []*pb.ResponseOp{
					{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 9}}}},
					{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{
						Header: &pb.ResponseHeader{}, Succeeded: true,
						Responses: []*pb.ResponseOp{{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{
							Header: &pb.ResponseHeader{Revision: 9}, Count: 1,
							Kvs: []*mvccpb.KeyValue{{Key: []byte("x"), CreateRevision: 9, ModRevision: 9, Version: 1}},
						}}}},
					}}},
				},
			}}},
			{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{
				Header: &pb.ResponseHeader{}, Succeeded: true,
				Responses: []*pb.ResponseOp{{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{
					Header: &pb.ResponseHeader{Revision: 9},
				}}}},
			}}},
			{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{
				Header: &pb.ResponseHeader{Revision: 9}, Deleted: 1,
			}}},
			{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{
				Header: &pb.ResponseHeader{Revision: 9}, Count: 5,
				Kvs: []*mvccpb.KeyValue{
					{Key: []byte("a"), Value: []byte("3"), CreateRevision: 2, ModRevision: 7, Version: 2},
					{Key: []byte("b"), Value: []byte("1"), CreateRevision: 3, ModRevision: 3, Version: 1, Lease: 5},
					{Key: []byte("c"), Value: []byte("1"), CreateRevision: 4, ModRevision: 8, Version: 2},
					{Key: []byte("e"), Value: []byte("0"), CreateRevision: 6, ModRevision: 6, Version: 1, Lease: 5},
					{Key: []byte("x"), CreateRevision: 9, ModRevision: 9, Version: 1},
				},
			}}},
		},
	}
	if !proto.Equal(resp, want) {
		t.Fatalf("response:\n%v\nwant:\n%v", resp, want)
	}
	if _, ok := m.kvs["never"]; ok {
		t.Fatal("a branch that was not taken ran")
	}
}

func TestRunTxnReadOnlyRevision(t *testing.T) {
	m := rangeFixture()
	resp, err := runTxn(m, &pb.TxnRequest{Compare: []*pb.Compare{versionIs("a", 1)}, Failure: []*pb.RequestOp{opGet("b", "")}}, -1)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Succeeded || resp.Header.Revision != 8 || resp.Responses[0].GetResponseRange().Header.Revision != 8 {
		t.Fatalf("response = %v", resp)
	}
}

func TestRunTxnChecks(t *testing.T) {
	putOp := func(p *pb.PutRequest) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: p}}
	}
	rangeAt := func(rev int64) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: rev}}}
	}
	tests := []struct {
		name     string
		r        *pb.TxnRequest
		firstRev int64
		want     error
	}{
		{"missing lease", &pb.TxnRequest{Success: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("k"), Lease: 77})}}, -1, rpctypes.ErrGRPCLeaseNotFound},
		{"existing lease", &pb.TxnRequest{Success: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("k"), Lease: 5})}}, -1, nil},
		{"ignore value of missing key", &pb.TxnRequest{Success: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("k"), IgnoreValue: true})}}, -1, rpctypes.ErrGRPCKeyNotFound},
		{"ignore lease of missing key", &pb.TxnRequest{Success: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("k"), IgnoreLease: true})}}, -1, rpctypes.ErrGRPCKeyNotFound},
		{"lease checked first", &pb.TxnRequest{Success: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("k"), IgnoreValue: true, Lease: 77})}}, -1, rpctypes.ErrGRPCLeaseNotFound},
		{"ignore value of existing key", &pb.TxnRequest{Success: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("b"), IgnoreValue: true})}}, -1, nil},
		{"not taken branch is not checked", &pb.TxnRequest{Failure: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("k"), Lease: 77})}}, -1, nil},
		{"future revision", &pb.TxnRequest{Success: []*pb.RequestOp{rangeAt(9)}}, -1, rpctypes.ErrGRPCFutureRev},
		{"current revision", &pb.TxnRequest{Success: []*pb.RequestOp{rangeAt(8)}}, -1, nil},
		{"compacted revision", &pb.TxnRequest{Success: []*pb.RequestOp{rangeAt(3)}}, 4, rpctypes.ErrGRPCCompacted},
		{"compaction revision itself", &pb.TxnRequest{Success: []*pb.RequestOp{rangeAt(4)}}, 4, nil},
		{"negative revision before compaction", &pb.TxnRequest{Success: []*pb.RequestOp{rangeAt(-1)}}, -1, nil},
		{"negative revision below etcd's initial", &pb.TxnRequest{Success: []*pb.RequestOp{rangeAt(-2)}}, -1, rpctypes.ErrGRPCCompacted},
		{"nested check", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(nil, nil, nil), opTxn(nil, []*pb.RequestOp{rangeAt(100)}, nil)}}, -1, rpctypes.ErrGRPCFutureRev},
		// Puts see the state before the txn: an earlier put does not
		// create the key for a later ignore_value (etcd checks first).
		{"checks see the state before the txn", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("k"), opTxn(nil, []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("k"), IgnoreValue: true})}, nil)}}, -1, rpctypes.ErrGRPCKeyNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := rangeFixture()
			m.compactRev = tt.firstRev
			_, err := runTxn(m, tt.r, tt.firstRev)
			if !errors.Is(err, tt.want) {
				t.Fatalf("runTxn error = %v, want %v", err, tt.want)
			}
			if err != nil && m.changed {
				t.Fatal("a failed txn changed the store")
			}
		})
	}
}

func TestPutKeepsValueAndLease(t *testing.T) {
	m := rangeFixture()
	resp, err := runTxn(m, &pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("b"), IgnoreValue: true, IgnoreLease: true, PrevKv: true}}},
	}}, -1)
	if err != nil {
		t.Fatal(err)
	}
	prev := resp.Responses[0].GetResponsePut().PrevKv
	if string(prev.GetValue()) != "1" || prev.GetLease() != 5 {
		t.Fatalf("prev kv = %v", prev)
	}
	kv := m.kvs["b"]
	if string(kv.Value) != "1" || kv.Lease != 5 || kv.Version != 2 {
		t.Fatalf("kv after put = %v", kv)
	}
}
