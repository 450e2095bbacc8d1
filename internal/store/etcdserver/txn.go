package etcdserver

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/herd-project/herd/internal/store/mvcc"
)

// txnView is what checking a request needs from a transaction.
type txnView interface {
	ranger
	// Rev is the revision the view shows (including its own writes).
	Rev() int64
	LeaseExists(id int64) bool
}

// txnWriter is what executing a request needs: *mvcc.WriteTxn, or
// readOnlyTxn for txns that only read.
type txnWriter interface {
	txnView
	Put(key, value []byte, lease int64) error
	DeleteRange(key, end []byte) int64
}

// errReadOnly is returned if a write reaches a read-only view; isTxnReadonly
// makes that impossible.
var errReadOnly = errors.New("etcdserver: write in a read-only transaction")

// readOnlyTxn runs read-only txns on a read transaction.
type readOnlyTxn struct{ *mvcc.ReadTxn }

func (readOnlyTxn) LeaseExists(int64) bool         { return false }
func (readOnlyTxn) Put(_, _ []byte, _ int64) error { return errReadOnly }
func (readOnlyTxn) DeleteRange(_, _ []byte) int64  { return 0 }

// runTxn evaluates the compares, checks the requests of the branches that
// will run (against the state before any of them), then executes them. Any
// error is returned before v is changed. firstRev is the oldest revision a
// range may read (etcd's compacted revision, -1 before any compaction).
func runTxn(v txnWriter, r *pb.TxnRequest, firstRev int64) (*pb.TxnResponse, error) {
	path := compareToPath(v, r)
	if _, err := checkTxn(v, r, path, firstRev); err != nil {
		return nil, err
	}
	resp, _ := newTxnResp(r, path)
	if _, err := executeTxn(v, r, path, resp); err != nil {
		return nil, err
	}
	resp.Header.Revision = v.Rev()
	return resp, nil
}

// isTxnReadonly reports whether both branches hold only ranges.
func isTxnReadonly(r *pb.TxnRequest) bool {
	for _, u := range r.GetSuccess() {
		if u.GetRequestRange() == nil {
			return false
		}
	}
	for _, u := range r.GetFailure() {
		if u.GetRequestRange() == nil {
			return false
		}
	}
	return true
}

// compareToPath evaluates the compares of r and of the nested txns on the
// branches taken, depth first: path[0] is r's result, then those of the nested
// txns in order.
func compareToPath(v ranger, r *pb.TxnRequest) []bool {
	path := []bool{applyCompares(v, r.GetCompare())}
	ops := r.GetSuccess()
	if !path[0] {
		ops = r.GetFailure()
	}
	for _, op := range ops {
		tv, ok := op.GetRequest().(*pb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		// A nil nested txn is an empty one, as it would decode from the wire.
		path = append(path, compareToPath(v, tv.RequestTxn)...)
	}
	return path
}

func applyCompares(v ranger, cmps []*pb.Compare) bool {
	for _, c := range cmps {
		if !applyCompare(v, c) {
			return false
		}
	}
	return true
}

// applyCompare is true if every key in the compare's range satisfies it. A
// VALUE compare fails on no key at all; other targets compare a missing key
// as all zeros.
func applyCompare(v ranger, c *pb.Compare) bool {
	rr, err := v.Range(c.GetKey(), rangeEnd(c.GetRangeEnd()), mvcc.RangeOptions{})
	if err != nil || rr == nil {
		return false
	}
	if len(rr.KVs) == 0 {
		if c.GetTarget() == pb.Compare_VALUE {
			return false
		}
		return compareKV(c, &mvccpb.KeyValue{})
	}
	for _, kv := range rr.KVs {
		if !compareKV(c, kv) {
			return false
		}
	}
	return true
}

// compareKV applies c to one KV. A target union that does not match the
// target compares against zero; an unknown result is true, as in etcd.
func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var result int
	var want int64
	switch c.GetTarget() {
	case pb.Compare_VALUE:
		var v []byte
		if tv, _ := c.GetTargetUnion().(*pb.Compare_Value); tv != nil {
			v = tv.Value
		}
		result = bytes.Compare(kv.Value, v)
	case pb.Compare_CREATE:
		if tv, _ := c.GetTargetUnion().(*pb.Compare_CreateRevision); tv != nil {
			want = tv.CreateRevision
		}
		result = compareInt64(kv.CreateRevision, want)
	case pb.Compare_MOD:
		if tv, _ := c.GetTargetUnion().(*pb.Compare_ModRevision); tv != nil {
			want = tv.ModRevision
		}
		result = compareInt64(kv.ModRevision, want)
	case pb.Compare_VERSION:
		if tv, _ := c.GetTargetUnion().(*pb.Compare_Version); tv != nil {
			want = tv.Version
		}
		result = compareInt64(kv.Version, want)
	case pb.Compare_LEASE:
		if tv, _ := c.GetTargetUnion().(*pb.Compare_Lease); tv != nil {
			want = tv.Lease
		}
		result = compareInt64(kv.Lease, want)
	}
	switch c.GetResult() {
	case pb.Compare_EQUAL:
		return result == 0
	case pb.Compare_NOT_EQUAL:
		return result != 0
	case pb.Compare_GREATER:
		return result > 0
	case pb.Compare_LESS:
		return result < 0
	}
	return true
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// branch returns the ops of r that run given its compare result.
func branch(r *pb.TxnRequest, succeeded bool) []*pb.RequestOp {
	if succeeded {
		return r.GetSuccess()
	}
	return r.GetFailure()
}

// checkTxn checks the requests on the taken branches against v: revisions of
// ranges, leases and previous values of puts. It returns the number of nested
// txns it walked, to advance path.
func checkTxn(v txnView, r *pb.TxnRequest, path []bool, firstRev int64) (int, error) {
	if len(path) == 0 {
		return 0, nil
	}
	txns := 0
	for _, req := range branch(r, path[0]) {
		var err error
		switch tv := req.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			err = checkRange(v, tv.RequestRange, firstRev)
		case *pb.RequestOp_RequestPut:
			err = checkPut(v, tv.RequestPut)
		case *pb.RequestOp_RequestTxn:
			var n int
			n, err = checkTxn(v, tv.RequestTxn, path[1:], firstRev)
			txns += n + 1
			path = path[min(n+1, len(path)):]
		}
		if err != nil {
			return 0, err
		}
	}
	return txns, nil
}

func checkRange(v txnView, r *pb.RangeRequest, firstRev int64) error {
	switch rev := r.GetRevision(); {
	case rev == 0:
		return nil
	case rev > v.Rev():
		return rpctypes.ErrGRPCFutureRev
	case rev < firstRev:
		return rpctypes.ErrGRPCCompacted
	}
	return nil
}

// checkPut checks what etcd checks before it applies a put: that the lease
// exists, then that the key exists if its value or lease is to be kept.
func checkPut(v txnView, p *pb.PutRequest) error {
	if id := p.GetLease(); id != 0 && !v.LeaseExists(id) {
		return rpctypes.ErrGRPCLeaseNotFound
	}
	prev, err := prevKV(v, p)
	if err != nil {
		return err
	}
	if (p.GetIgnoreValue() || p.GetIgnoreLease()) && prev == nil {
		return rpctypes.ErrGRPCKeyNotFound
	}
	return nil
}

// prevKV reads the key a put overwrites if the put needs it.
func prevKV(v ranger, p *pb.PutRequest) (*mvccpb.KeyValue, error) {
	if !p.GetIgnoreValue() && !p.GetIgnoreLease() && !p.GetPrevKv() {
		return nil, nil
	}
	rr, err := v.Range(p.GetKey(), nil, mvcc.RangeOptions{})
	if err != nil {
		return nil, err
	}
	if rr == nil || len(rr.KVs) == 0 {
		return nil, nil
	}
	return rr.KVs[0], nil
}

// newTxnResp allocates the response tree of the branches path takes. Nested
// txn responses keep an empty header, as etcd's do.
func newTxnResp(r *pb.TxnRequest, path []bool) (*pb.TxnResponse, int) {
	succeeded := len(path) > 0 && path[0]
	reqs := branch(r, succeeded)
	resps := make([]*pb.ResponseOp, len(reqs))
	resp := &pb.TxnResponse{Responses: resps, Succeeded: succeeded, Header: &pb.ResponseHeader{}}
	txns := 0
	for i, req := range reqs {
		switch tv := req.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{}}
		case *pb.RequestOp_RequestPut:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{}}
		case *pb.RequestOp_RequestDeleteRange:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{}}
		case *pb.RequestOp_RequestTxn:
			var sub []bool
			if len(path) > 1 {
				sub = path[1:]
			}
			nested, n := newTxnResp(tv.RequestTxn, sub)
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: nested}}
			path = path[min(n+1, len(path)):]
			txns += n + 1
		default:
			resps[i] = &pb.ResponseOp{}
		}
	}
	return resp, txns
}

// executeTxn runs the taken branch of r into resp, which newTxnResp shaped.
// Each response carries the revision of the view right after the op.
func executeTxn(v txnWriter, r *pb.TxnRequest, path []bool, resp *pb.TxnResponse) (int, error) {
	if len(path) == 0 {
		return 0, nil
	}
	txns := 0
	for i, req := range branch(r, path[0]) {
		if i >= len(resp.Responses) {
			break
		}
		switch tv := req.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			rr, err := executeRange(v, tv.RequestRange)
			if err != nil {
				return 0, fmt.Errorf("txn range: %w", err)
			}
			rr.Header.Revision = v.Rev()
			resp.Responses[i].Response = &pb.ResponseOp_ResponseRange{ResponseRange: rr}
		case *pb.RequestOp_RequestPut:
			pr, err := executePut(v, tv.RequestPut)
			if err != nil {
				return 0, fmt.Errorf("txn put: %w", err)
			}
			resp.Responses[i].Response = &pb.ResponseOp_ResponsePut{ResponsePut: pr}
		case *pb.RequestOp_RequestDeleteRange:
			dr, err := executeDelete(v, tv.RequestDeleteRange)
			if err != nil {
				return 0, fmt.Errorf("txn delete: %w", err)
			}
			resp.Responses[i].Response = &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}
		case *pb.RequestOp_RequestTxn:
			nested := resp.Responses[i].GetResponseTxn()
			if nested == nil {
				continue
			}
			n, err := executeTxn(v, tv.RequestTxn, path[1:], nested)
			if err != nil {
				return 0, err
			}
			txns += n + 1
			path = path[min(n+1, len(path)):]
		}
	}
	return txns, nil
}

// executePut applies a checked put.
func executePut(v txnWriter, p *pb.PutRequest) (*pb.PutResponse, error) {
	prev, err := prevKV(v, p)
	if err != nil {
		return nil, err
	}
	val, leaseID := p.GetValue(), p.GetLease()
	if prev != nil {
		if p.GetIgnoreValue() {
			val = prev.Value
		}
		if p.GetIgnoreLease() {
			leaseID = prev.Lease
		}
	}
	if err := v.Put(p.GetKey(), val, leaseID); err != nil {
		return nil, err
	}
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{Revision: v.Rev()}}
	if p.GetPrevKv() {
		resp.PrevKv = prev
	}
	return resp, nil
}

// executeDelete applies a delete.
func executeDelete(v txnWriter, d *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	end := rangeEnd(d.GetRangeEnd())
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}}
	if d.GetPrevKv() {
		rr, err := v.Range(d.GetKey(), end, mvcc.RangeOptions{})
		if err != nil {
			return nil, err
		}
		if rr != nil {
			resp.PrevKvs = slices.Clone(rr.KVs)
		}
	}
	resp.Deleted = v.DeleteRange(d.GetKey(), end)
	resp.Header.Revision = v.Rev()
	return resp, nil
}
