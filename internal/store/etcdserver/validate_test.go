package etcdserver

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func opPut(key string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key)}}}
}

func opGet(key, end string) *pb.RequestOp {
	r := &pb.RangeRequest{Key: []byte(key)}
	if end != "" {
		r.RangeEnd = []byte(end)
	}
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func opDel(key, end string) *pb.RequestOp {
	r := &pb.DeleteRangeRequest{Key: []byte(key)}
	if end != "" {
		r.RangeEnd = []byte(end)
	}
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}
}

func opTxn(cmps []*pb.Compare, then, els []*pb.RequestOp) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Compare: cmps, Success: then, Failure: els}}}
}

func ops(n int, mk func(i int) *pb.RequestOp) []*pb.RequestOp {
	out := make([]*pb.RequestOp, n)
	for i := range out {
		out[i] = mk(i)
	}
	return out
}

func TestCheckRangeRequest(t *testing.T) {
	tests := []struct {
		name string
		r    *pb.RangeRequest
		want error
	}{
		{"nil", nil, rpctypes.ErrGRPCEmptyKey},
		{"empty key", &pb.RangeRequest{RangeEnd: []byte("z")}, rpctypes.ErrGRPCEmptyKey},
		{"ok", &pb.RangeRequest{Key: []byte("a")}, nil},
		{"all sort options", &pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_VALUE}, nil},
		{"bad order", &pb.RangeRequest{Key: []byte("a"), SortOrder: 3}, rpctypes.ErrGRPCInvalidSortOption},
		{"bad target", &pb.RangeRequest{Key: []byte("a"), SortTarget: 5}, rpctypes.ErrGRPCInvalidSortOption},
		{"empty key before bad sort", &pb.RangeRequest{SortOrder: 9}, rpctypes.ErrGRPCEmptyKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkRangeRequest(tt.r); !errors.Is(got, tt.want) {
				t.Fatalf("checkRangeRequest = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckRangeStreamRequest(t *testing.T) {
	tests := []struct {
		name     string
		r        *pb.RangeRequest
		wantCode codes.Code
	}{
		{"ok", &pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_ASCEND}, codes.OK},
		{"empty key", &pb.RangeRequest{}, codes.InvalidArgument},
		{"custom sort", &pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_DESCEND}, codes.Unimplemented},
		{"revision filter", &pb.RangeRequest{Key: []byte("a"), MinModRevision: 2}, codes.Unimplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(checkRangeStreamRequest(tt.r)); got != tt.wantCode {
				t.Fatalf("code = %v, want %v", got, tt.wantCode)
			}
		})
	}
}

func TestCheckPutDeleteRequest(t *testing.T) {
	tests := []struct {
		name string
		r    *pb.PutRequest
		want error
	}{
		{"ok", &pb.PutRequest{Key: []byte("a"), Value: []byte("v")}, nil},
		{"empty key", &pb.PutRequest{Value: []byte("v")}, rpctypes.ErrGRPCEmptyKey},
		{"ignore value with value", &pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true}, rpctypes.ErrGRPCValueProvided},
		{"ignore value", &pb.PutRequest{Key: []byte("a"), IgnoreValue: true}, nil},
		{"ignore lease with lease", &pb.PutRequest{Key: []byte("a"), Lease: 1, IgnoreLease: true}, rpctypes.ErrGRPCLeaseProvided},
		{"value checked before lease", &pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true, Lease: 1, IgnoreLease: true}, rpctypes.ErrGRPCValueProvided},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkPutRequest(tt.r); !errors.Is(got, tt.want) {
				t.Fatalf("checkPutRequest = %v, want %v", got, tt.want)
			}
		})
	}
	if err := checkDeleteRequest(&pb.DeleteRangeRequest{}); !errors.Is(err, rpctypes.ErrGRPCEmptyKey) {
		t.Fatalf("checkDeleteRequest(empty) = %v", err)
	}
	if err := checkDeleteRequest(&pb.DeleteRangeRequest{Key: []byte("a")}); err != nil {
		t.Fatalf("checkDeleteRequest = %v", err)
	}
}

func TestCheckTxnRequest(t *testing.T) {
	const maxOps = 4
	cmp := func(key string) *pb.Compare { return &pb.Compare{Key: []byte(key)} }
	tests := []struct {
		name string
		r    *pb.TxnRequest
		want error
	}{
		{"empty", &pb.TxnRequest{}, nil},
		{"at limit", &pb.TxnRequest{Success: ops(maxOps, func(int) *pb.RequestOp { return opGet("a", "") })}, nil},
		{"too many success", &pb.TxnRequest{Success: ops(maxOps+1, func(int) *pb.RequestOp { return opGet("a", "") })}, rpctypes.ErrGRPCTooManyOps},
		{"too many failure", &pb.TxnRequest{Failure: ops(maxOps+1, func(int) *pb.RequestOp { return opGet("a", "") })}, rpctypes.ErrGRPCTooManyOps},
		{"too many compares", &pb.TxnRequest{Compare: []*pb.Compare{cmp("a"), cmp("a"), cmp("a"), cmp("a"), cmp("a")}}, rpctypes.ErrGRPCTooManyOps},
		{"empty compare key", &pb.TxnRequest{Compare: []*pb.Compare{{}}}, rpctypes.ErrGRPCEmptyKey},
		{"empty op", &pb.TxnRequest{Success: []*pb.RequestOp{{}}}, rpctypes.ErrGRPCKeyNotFound},
		{"nil op", &pb.TxnRequest{Failure: []*pb.RequestOp{nil}}, rpctypes.ErrGRPCKeyNotFound},
		{"bad nested put", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{}}}}}, rpctypes.ErrGRPCEmptyKey},
		{"bad nested range", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), SortOrder: 7}}}}}, rpctypes.ErrGRPCInvalidSortOption},
		{"nil nested txn", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{}}}}, nil},
		// A nested txn gets the budget left by its parent (4 - 2 = 2).
		{"nested within budget", &pb.TxnRequest{Success: []*pb.RequestOp{opGet("a", ""), opTxn(nil, ops(2, func(int) *pb.RequestOp { return opGet("a", "") }), nil)}}, nil},
		{"nested over budget", &pb.TxnRequest{Success: []*pb.RequestOp{opGet("a", ""), opTxn(nil, ops(3, func(int) *pb.RequestOp { return opGet("a", "") }), nil)}}, rpctypes.ErrGRPCTooManyOps},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkTxnRequest(tt.r, maxOps); !errors.Is(got, tt.want) {
				t.Fatalf("checkTxnRequest = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckIntervals(t *testing.T) {
	tests := []struct {
		name string
		ops  []*pb.RequestOp
		dup  bool
	}{
		{"distinct puts", []*pb.RequestOp{opPut("a"), opPut("b")}, false},
		{"same put twice", []*pb.RequestOp{opPut("a"), opPut("a")}, true},
		{"put and delete same key", []*pb.RequestOp{opDel("a", ""), opPut("a")}, true},
		{"put inside deleted range", []*pb.RequestOp{opPut("b"), opDel("a", "c")}, true},
		{"put at range end", []*pb.RequestOp{opPut("c"), opDel("a", "c")}, false},
		{"put under delete of every key from", []*pb.RequestOp{opDel("a", "\x00"), opPut("b")}, true},
		{"put before delete of every key from", []*pb.RequestOp{opDel("b", "\x00"), opPut("a")}, false},
		{"nested put under outer delete from", []*pb.RequestOp{opDel("a", "\x00"), opTxn(nil, []*pb.RequestOp{opPut("k")}, nil)}, true},
		{"ranges do not count", []*pb.RequestOp{opGet("a", ""), opPut("a"), opGet("a", "z")}, false},
		{"two deletes overlap", []*pb.RequestOp{opDel("a", "c"), opDel("b", "d")}, false},
		{"nested branches may share a key", []*pb.RequestOp{opTxn(nil, []*pb.RequestOp{opPut("a")}, []*pb.RequestOp{opPut("a")})}, false},
		{"nested put and outer put", []*pb.RequestOp{opPut("a"), opTxn(nil, []*pb.RequestOp{opPut("a")}, nil)}, true},
		{"nested else put and outer put", []*pb.RequestOp{opPut("a"), opTxn(nil, nil, []*pb.RequestOp{opPut("a")})}, true},
		{"nested put under outer delete", []*pb.RequestOp{opDel("a", "z"), opTxn(nil, []*pb.RequestOp{opPut("k")}, nil)}, true},
		{"nested delete over outer put", []*pb.RequestOp{opPut("k"), opTxn(nil, []*pb.RequestOp{opDel("a", "z")}, nil)}, true},
		{"two nested txns put the same key", []*pb.RequestOp{opTxn(nil, []*pb.RequestOp{opPut("a")}, nil), opTxn(nil, []*pb.RequestOp{opPut("a")}, nil)}, true},
		{"duplicate deep inside", []*pb.RequestOp{opTxn(nil, []*pb.RequestOp{opTxn(nil, []*pb.RequestOp{opPut("x"), opPut("x")}, nil)}, nil)}, true},
		{"nil nested txn", []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := checkIntervals(tt.ops)
			if got := errors.Is(err, rpctypes.ErrGRPCDuplicateKey); got != tt.dup || (err != nil && !got) {
				t.Fatalf("checkIntervals = %v, want duplicate %v", err, tt.dup)
			}
		})
	}
}
