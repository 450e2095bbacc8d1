package etcdserver

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"
)

// This file holds what etcd does to a changing request between its gRPC
// handler and its application to the store: the quota check, the raft
// proposal's size limit and the alarm appliers.

// The backend quota, as etcd's storage.BackendQuota with the default
// --quota-backend-bytes.
const (
	defaultQuotaBytes = int64(2 * 1024 * 1024 * 1024)
	quotaLeaseCost    = 64
	quotaKVOverhead   = 256
)

// quotaCost estimates how much a request grows the database.
func quotaCost(req proto.Message) int {
	switch r := req.(type) {
	case *pb.PutRequest:
		return quotaKVOverhead + len(r.GetKey()) + len(r.GetValue())
	case *pb.TxnRequest:
		return txnCost(r)
	case *pb.LeaseGrantRequest:
		return quotaLeaseCost
	}
	return 0
}

// txnCost is the cost of the costlier branch.
func txnCost(r *pb.TxnRequest) int {
	cost := func(ops []*pb.RequestOp) int {
		c := 0
		for _, u := range ops {
			if p := u.GetRequestPut(); p != nil {
				c += quotaCost(p)
			} else if t := u.GetRequestTxn(); t != nil {
				c += txnCost(t)
			}
		}
		return c
	}
	return max(cost(r.GetSuccess()), cost(r.GetFailure()))
}

// checkQuota refuses a request that would grow the database beyond the
// quota, and raises the NOSPACE alarm, as etcd's quota servers do.
func (s *Server) checkQuota(req proto.Message) error {
	cost := quotaCost(req)
	if cost == 0 {
		return nil
	}
	if s.store.Size()+int64(cost) < defaultQuotaBytes {
		return nil
	}
	s.raftIndex.Add(1)
	if _, err := s.alarms.activate(s.memberID, pb.AlarmType_NOSPACE); err != nil {
		s.log.Error("cannot record the NOSPACE alarm", "error", err)
	}
	return rpctypes.ErrGRPCNoSpace
}

// applyKind names the requests etcd's alarm appliers intercept.
type applyKind int

const (
	applyPut applyKind = iota
	applyDelete
	applyTxn
	applyCompact
	applyLeaseGrant
	applyLeaseRevoke
)

// alarmGate is what etcd's appliers do while an alarm is raised: with
// CORRUPT every change fails; with NOSPACE puts, txns that put and lease
// grants fail. cost is the request's quota cost.
func (s *Server) alarmGate(kind applyKind, cost int) error {
	if s.alarms.has(pb.AlarmType_CORRUPT) {
		return rpctypes.ErrGRPCCorrupt
	}
	if s.alarms.has(pb.AlarmType_NOSPACE) {
		switch {
		case kind == applyPut, kind == applyLeaseGrant, kind == applyTxn && cost > 0:
			return rpctypes.ErrGRPCNoSpace
		}
	}
	return nil
}

// propose does what etcd does to a request before proposing it to raft: it
// stamps it with a request ID and refuses it if the proposal would exceed
// MaxRequestBytes.
func (s *Server) propose(r *pb.InternalRaftRequest) error {
	r.Header = &pb.RequestHeader{ID: s.reqIDs.next()}
	if proto.Size(r) > s.cfg.MaxRequestBytes {
		return rpctypes.ErrGRPCRequestTooLarge
	}
	s.raftIndex.Add(1)
	return nil
}
