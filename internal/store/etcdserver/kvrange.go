package etcdserver

import (
	"bytes"
	"math"
	"slices"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/herd-project/herd/internal/store/mvcc"
)

// ranger is the read side of a transaction of the engine.
type ranger interface {
	Range(key, end []byte, ro mvcc.RangeOptions) (*mvcc.RangeResult, error)
}

// rangeEnd turns a request's range_end into the engine's: absent means the
// single key. "\x00" (every key >= key) is understood by the engine as is.
func rangeEnd(end []byte) []byte {
	if len(end) == 0 {
		return nil
	}
	return end
}

// executeRange runs a RangeRequest the way etcd's txn.executeRange does:
// fetch (one more than the limit, to know whether there is more), filter by
// revisions, sort, cut to the limit. The response header carries only the
// revision.
func executeRange(v ranger, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	ro := mvcc.RangeOptions{
		Limit: max(rangeLimit(r), 0),
		Rev:   max(r.GetRevision(), 0), // etcd reads the latest revision for any rev <= 0
		Count: r.GetCountOnly(),
	}
	rr, err := v.Range(r.GetKey(), rangeEnd(r.GetRangeEnd()), ro)
	if err != nil {
		return nil, err
	}
	if rr == nil {
		rr = &mvcc.RangeResult{}
	}
	kvs := rr.KVs
	if r.GetKeysOnly() && r.GetSortTarget() != pb.RangeRequest_VALUE {
		// etcd serves these from its index alone: no value and no lease.
		kvs = keysOnly(kvs, true)
	}
	if hasRevisionFilters(r) || !isDefaultOrdering(r.GetSortTarget(), effectiveSortOrder(r)) {
		kvs = slices.Clone(kvs) // do not reorder the engine's slice
	}
	kvs = filterKVs(kvs, r)
	sortKVs(kvs, r)

	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: rr.Rev}, Count: rr.Count}
	if l := r.GetLimit(); l > 0 && int64(len(kvs)) > l {
		kvs = kvs[:l]
		resp.More = true
	}
	if r.GetKeysOnly() && r.GetSortTarget() == pb.RangeRequest_VALUE {
		kvs = keysOnly(kvs, false)
	}
	resp.Kvs = kvs
	if resp.Kvs == nil {
		resp.Kvs = []*mvccpb.KeyValue{}
	}
	return resp, nil
}

// keysOnly returns copies of kvs without values and, if dropLease, leases.
func keysOnly(kvs []*mvccpb.KeyValue, dropLease bool) []*mvccpb.KeyValue {
	out := make([]*mvccpb.KeyValue, len(kvs))
	for i, kv := range kvs {
		c := &mvccpb.KeyValue{
			Key:            kv.Key,
			CreateRevision: kv.CreateRevision,
			ModRevision:    kv.ModRevision,
			Version:        kv.Version,
			Lease:          kv.Lease,
		}
		if dropLease {
			c.Lease = 0
		}
		out[i] = c
	}
	return out
}

// rangeLimit is the limit asked of the engine: none if everything must be
// sorted or filtered first, else one more than asked, to detect "more".
func rangeLimit(r *pb.RangeRequest) int64 {
	limit := r.GetLimit()
	if !isDefaultOrdering(r.GetSortTarget(), r.GetSortOrder()) || hasRevisionFilters(r) {
		limit = 0
	}
	if limit > 0 && limit < math.MaxInt64 {
		limit++
	}
	return limit
}

// isDefaultOrdering reports whether the engine's key order is the answer.
func isDefaultOrdering(target pb.RangeRequest_SortTarget, order pb.RangeRequest_SortOrder) bool {
	return order == pb.RangeRequest_NONE ||
		(target == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND)
}

func hasRevisionFilters(r *pb.RangeRequest) bool {
	return r.GetMinModRevision() != 0 || r.GetMaxModRevision() != 0 ||
		r.GetMinCreateRevision() != 0 || r.GetMaxCreateRevision() != 0
}

// effectiveSortOrder: a sort target other than KEY with no order sorts
// ascending.
func effectiveSortOrder(r *pb.RangeRequest) pb.RangeRequest_SortOrder {
	if r.GetSortTarget() != pb.RangeRequest_KEY && r.GetSortOrder() == pb.RangeRequest_NONE {
		return pb.RangeRequest_ASCEND
	}
	return r.GetSortOrder()
}

// filterKVs drops the KVs outside the request's revision bounds, in place.
func filterKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) []*mvccpb.KeyValue {
	if m := r.GetMaxModRevision(); m != 0 {
		kvs = pruneKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision > m })
	}
	if m := r.GetMinModRevision(); m != 0 {
		kvs = pruneKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision < m })
	}
	if m := r.GetMaxCreateRevision(); m != 0 {
		kvs = pruneKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision > m })
	}
	if m := r.GetMinCreateRevision(); m != 0 {
		kvs = pruneKVs(kvs, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision < m })
	}
	return kvs
}

func pruneKVs(kvs []*mvccpb.KeyValue, prune func(*mvccpb.KeyValue) bool) []*mvccpb.KeyValue {
	j := 0
	for i := range kvs {
		kvs[j] = kvs[i]
		if !prune(kvs[i]) {
			j++
		}
	}
	return kvs[:j]
}

// sortKVs sorts in place exactly as etcd does: with sort.Sort (not stable)
// and sort.Reverse on the same comparisons, so that ties end up in the same
// order as etcd's.
func sortKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) {
	order := effectiveSortOrder(r)
	if isDefaultOrdering(r.GetSortTarget(), order) {
		return
	}
	var sorter sort.Interface
	switch r.GetSortTarget() {
	case pb.RangeRequest_KEY:
		sorter = kvSortByKey{kvs}
	case pb.RangeRequest_VERSION:
		sorter = kvSortByVersion{kvs}
	case pb.RangeRequest_CREATE:
		sorter = kvSortByCreate{kvs}
	case pb.RangeRequest_MOD:
		sorter = kvSortByMod{kvs}
	case pb.RangeRequest_VALUE:
		sorter = kvSortByValue{kvs}
	default:
		return // rejected by checkRangeRequest
	}
	switch order {
	case pb.RangeRequest_ASCEND:
		sort.Sort(sorter)
	case pb.RangeRequest_DESCEND:
		sort.Sort(sort.Reverse(sorter))
	}
}

type kvSort []*mvccpb.KeyValue

func (s kvSort) Len() int      { return len(s) }
func (s kvSort) Swap(i, j int) { s[i], s[j] = s[j], s[i] }

// The integer comparisons subtract, as etcd's do.

type kvSortByKey struct{ kvSort }

func (s kvSortByKey) Less(i, j int) bool { return bytes.Compare(s.kvSort[i].Key, s.kvSort[j].Key) < 0 }

type kvSortByVersion struct{ kvSort }

func (s kvSortByVersion) Less(i, j int) bool {
	return (s.kvSort[i].Version - s.kvSort[j].Version) < 0
}

type kvSortByCreate struct{ kvSort }

func (s kvSortByCreate) Less(i, j int) bool {
	return (s.kvSort[i].CreateRevision - s.kvSort[j].CreateRevision) < 0
}

type kvSortByMod struct{ kvSort }

func (s kvSortByMod) Less(i, j int) bool {
	return (s.kvSort[i].ModRevision - s.kvSort[j].ModRevision) < 0
}

type kvSortByValue struct{ kvSort }

func (s kvSortByValue) Less(i, j int) bool {
	return bytes.Compare(s.kvSort[i].Value, s.kvSort[j].Value) < 0
}
