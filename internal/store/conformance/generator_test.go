package conformance

import (
	"math/rand/v2"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// model is what the generator knows about the store: the reference's
// answers so far.
type model struct {
	rev        int64 // current revision
	compactRev int64 // last successful compaction (0: none)
	nextLabel  int   // label of the next watch
	live       []int // labels of watches that may be canceled
}

// source yields the operations of a run.
type source interface {
	next(m *model) (genOp, bool)
}

// replay yields a fixed sequence.
type replay struct {
	ops []genOp
	i   int
}

func (r *replay) next(*model) (genOp, bool) {
	if r.i >= len(r.ops) {
		return genOp{}, false
	}
	r.i++
	return r.ops[r.i-1], true
}

// generator yields random operations over a small key space, so that
// compares, overwrites, deletes and duplicate-key errors are frequent.
type generator struct {
	rnd *rand.Rand
}

func newGenerator(seed uint64) *generator {
	return &generator{rnd: rand.New(rand.NewPCG(seed, 0x6865726463666d))}
}

var (
	genKeys   = []string{"a", "a/1", "a/2", "b", "b/1", "c", "d", "e"}
	genValues = []string{"", "v0", "v1", "v2", "v3"}
	genLeases = []int64{1, 2, 3}
)

func (g *generator) pick(n int) int { return g.rnd.IntN(n) }

func (g *generator) chance(pct int) bool { return g.rnd.IntN(100) < pct }

func (g *generator) key() []byte { return []byte(genKeys[g.pick(len(genKeys))]) }

// end returns a range end for key: none, a prefix end, "\x00", or another
// key (possibly before key, an empty range).
func (g *generator) end(key []byte) []byte {
	switch g.pick(6) {
	case 0, 1:
		return nil
	case 2:
		e := append([]byte(nil), key...)
		e[len(e)-1]++
		return e
	case 3:
		return []byte{0}
	default:
		return g.key()
	}
}

func (g *generator) value() []byte { return []byte(genValues[g.pick(len(genValues))]) }

func (g *generator) lease() int64 {
	if g.chance(80) {
		return 0
	}
	if g.chance(15) {
		return 9 // never granted
	}
	return genLeases[g.pick(len(genLeases))]
}

// rev returns a revision around the interesting window: mostly valid
// historic revisions, sometimes compacted or future ones.
func (g *generator) rev(m *model) int64 {
	lo := max(m.compactRev-1, 1)
	hi := m.rev + 1
	return lo + g.rnd.Int64N(hi-lo+1)
}

func (g *generator) next(m *model) (genOp, bool) {
	switch w := g.pick(100); {
	case w < 28:
		return genOp{Put: g.put(m)}, true
	case w < 38:
		return genOp{Delete: g.del()}, true
	case w < 56:
		return genOp{Range: g.rangeReq(m)}, true
	case w < 80:
		return genOp{Txn: g.txn(m, 0)}, true
	case w < 82:
		return genOp{Compact: &pb.CompactionRequest{Revision: g.rev(m), Physical: true}}, true
	case w < 88:
		req := &pb.WatchCreateRequest{Key: g.key(), PrevKv: g.chance(50), Fragment: g.chance(10)}
		req.RangeEnd = g.end(req.Key)
		if g.chance(60) {
			lo := max(m.compactRev-2, 1)
			req.StartRevision = lo + g.rnd.Int64N(m.rev-lo+1)
		}
		if g.chance(20) {
			req.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_FilterType(g.pick(2))}
		}
		m.nextLabel++
		return genOp{Watch: req, Stream: g.pick(2), Label: m.nextLabel}, true
	case w < 91:
		if len(m.live) == 0 {
			return g.next(m)
		}
		return genOp{Cancel: true, Label: m.live[g.pick(len(m.live))]}, true
	case w < 93:
		return genOp{Grant: &pb.LeaseGrantRequest{ID: genLeases[g.pick(len(genLeases))], TTL: 3600}}, true
	case w < 95:
		return genOp{Revoke: &pb.LeaseRevokeRequest{ID: genLeases[g.pick(len(genLeases))]}}, true
	case w < 97:
		return genOp{TTL: &pb.LeaseTimeToLiveRequest{ID: g.lease(), Keys: g.chance(70)}}, true
	case w < 98:
		return genOp{Leases: &pb.LeaseLeasesRequest{}}, true
	default:
		return genOp{KeepAlive: &pb.LeaseKeepAliveRequest{ID: genLeases[g.pick(len(genLeases))]}}, true
	}
}

func (g *generator) put(m *model) *pb.PutRequest {
	r := &pb.PutRequest{Key: g.key(), Value: g.value(), PrevKv: g.chance(30), Lease: g.lease()}
	if g.chance(5) {
		r.IgnoreValue = true
		if g.chance(70) {
			r.Value = nil
		}
	}
	if g.chance(5) {
		r.IgnoreLease = true
		if g.chance(70) {
			r.Lease = 0
		}
	}
	return r
}

func (g *generator) del() *pb.DeleteRangeRequest {
	r := &pb.DeleteRangeRequest{Key: g.key(), PrevKv: g.chance(40)}
	if g.chance(50) {
		r.RangeEnd = g.end(r.Key)
	}
	return r
}

func (g *generator) rangeReq(m *model) *pb.RangeRequest {
	r := &pb.RangeRequest{Key: g.key(), Serializable: g.chance(20)}
	r.RangeEnd = g.end(r.Key)
	if g.chance(30) {
		r.Limit = []int64{1, 2, 3, 5}[g.pick(4)]
	}
	if g.chance(30) {
		r.Revision = g.rev(m)
	}
	if g.chance(30) {
		r.SortTarget = pb.RangeRequest_SortTarget(g.pick(5))
		r.SortOrder = pb.RangeRequest_SortOrder(g.pick(3))
	}
	r.KeysOnly = g.chance(15)
	r.CountOnly = g.chance(10)
	if g.chance(10) {
		r.MinModRevision = g.rnd.Int64N(m.rev + 1)
	}
	if g.chance(10) {
		r.MaxModRevision = g.rnd.Int64N(m.rev + 1)
	}
	if g.chance(10) {
		r.MinCreateRevision = g.rnd.Int64N(m.rev + 1)
	}
	if g.chance(10) {
		r.MaxCreateRevision = g.rnd.Int64N(m.rev + 1)
	}
	return r
}

func (g *generator) txn(m *model, depth int) *pb.TxnRequest {
	r := &pb.TxnRequest{}
	for range g.pick(4) {
		c := &pb.Compare{Key: g.key(), Target: pb.Compare_CompareTarget(g.pick(5)), Result: pb.Compare_CompareResult(g.pick(4))}
		if g.chance(25) {
			c.RangeEnd = g.end(c.Key)
		}
		switch c.Target {
		case pb.Compare_VALUE:
			c.TargetUnion = &pb.Compare_Value{Value: g.value()}
		case pb.Compare_VERSION:
			c.TargetUnion = &pb.Compare_Version{Version: g.rnd.Int64N(4)}
		case pb.Compare_CREATE:
			c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: g.rnd.Int64N(m.rev + 2)}
		case pb.Compare_MOD:
			c.TargetUnion = &pb.Compare_ModRevision{ModRevision: g.rnd.Int64N(m.rev + 2)}
		case pb.Compare_LEASE:
			c.TargetUnion = &pb.Compare_Lease{Lease: g.lease()}
		}
		r.Compare = append(r.Compare, c)
	}
	ops := func() []*pb.RequestOp {
		var out []*pb.RequestOp
		for range g.pick(4) {
			switch k := g.pick(10); {
			case k < 3:
				out = append(out, opRangeReq(g.rangeReq(m)))
			case k < 6:
				out = append(out, opPutReq(g.put(m)))
			case k < 8:
				out = append(out, opDeleteReq(g.del()))
			default:
				if depth < 2 {
					out = append(out, opTxn(g.txn(m, depth+1)))
				}
			}
		}
		return out
	}
	r.Success, r.Failure = ops(), ops()
	if depth == 0 && hasOp(r, func(op *pb.RequestOp) bool { return op.GetRequestPut() != nil }) {
		// etcd 3.7.3's duplicate-key check does not see deletes with
		// range_end "\x00" (from key), so such a txn can change a key twice
		// in one revision, which etcd does not survive: it panics
		// (txn.put with ignore_value/ignore_lease) or a later historic read
		// is fatal ("range failed to find revision pair"). In txns that put,
		// make such deletes end at "\xff" instead (the same keys here), so
		// that the duplicate-key check applies.
		hasOp(r, func(op *pb.RequestOp) bool {
			if d := op.GetRequestDeleteRange(); d != nil && len(d.RangeEnd) == 1 && d.RangeEnd[0] == 0 {
				d.RangeEnd = []byte{0xff}
			}
			return false
		})
	}
	return r
}

// hasOp reports whether fn holds for an operation anywhere in r, nested
// transactions included; it visits every operation until fn holds.
func hasOp(r *pb.TxnRequest, fn func(*pb.RequestOp) bool) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if fn(op) {
				return true
			}
			if n := op.GetRequestTxn(); n != nil && hasOp(n, fn) {
				return true
			}
		}
	}
	return false
}
