package etcdserver

import (
	"bytes"
	"context"
	"math"

	"github.com/herd-project/herd/internal/store/mvcc"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"
)

// kvServer is the KV service.
type kvServer struct {
	pb.UnimplementedKVServer
	s *Server
}

// firstRev is the oldest revision a range in a txn may ask for: the
// compacted revision, or -1 before any compaction (etcd's initial value).
func (s *Server) firstRev() int64 {
	if rev := s.store.CompactRev(); rev > 0 {
		return rev
	}
	if s.compactedZero.Load() {
		return 0
	}
	return -1
}

func (k *kvServer) Range(_ context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRangeRequest(r); err != nil {
		return nil, err
	}
	rt := k.s.store.Read()
	resp, err := executeRange(rt, r)
	rt.End()
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = k.s.header(resp.Header.Revision)
	return resp, nil
}

// initialStreamChunkLimit is the number of KVs in RangeStream's first chunk.
const initialStreamChunkLimit = 10

// RangeStream sends a range in chunks that grow or shrink toward
// MaxRequestBytes, all read at the revision of the first, as etcd does. Only
// the last chunk has a header, count and more.
func (k *kvServer) RangeStream(r *pb.RangeRequest, stream pb.KV_RangeStreamServer) error {
	if err := checkRangeStreamRequest(r); err != nil {
		return err
	}
	r = proto.Clone(r).(*pb.RangeRequest)
	send := func(resp *pb.RangeResponse) error {
		if resp.Header != nil {
			resp.Header = k.s.header(resp.Header.Revision)
		}
		return stream.Send(&pb.RangeStreamResponse{RangeResponse: resp})
	}
	if r.CountOnly {
		resp, err := k.readRange(r)
		if err != nil {
			return toGRPCError(err)
		}
		return send(&pb.RangeResponse{Header: &pb.ResponseHeader{Revision: resp.Header.Revision}, Count: resp.Count})
	}

	totalLimit := r.Limit
	if totalLimit == 0 {
		totalLimit = math.MaxInt64
	}
	r.Limit = min(initialStreamChunkLimit, totalLimit)
	var count, headerRev int64
	for {
		resp, err := k.readRange(r)
		if err != nil {
			return toGRPCError(err)
		}
		if headerRev == 0 {
			// Later chunks read at the revision of the first.
			headerRev = resp.Header.Revision
			if r.Revision == 0 {
				r.Revision = headerRev
			}
		}
		count += int64(len(resp.Kvs))

		var nextKey []byte
		if resp.More {
			nextKey = append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0)
		}
		out := &pb.RangeResponse{Kvs: resp.Kvs}
		done := !resp.More || count == totalLimit
		if done {
			out.Header = &pb.ResponseHeader{Revision: headerRev}
			out.More = resp.More
			out.Count = count
			if resp.More {
				rest, err := k.readRange(&pb.RangeRequest{Key: nextKey, RangeEnd: r.RangeEnd, Revision: r.Revision, CountOnly: true})
				if err != nil {
					return toGRPCError(err)
				}
				out.Count += rest.Count
			}
		}
		if err := send(out); err != nil {
			return err
		}
		if done {
			return nil
		}
		r.Key = nextKey
		r.Limit = min(adjustChunkLimit(r.Limit, proto.Size(resp), k.s.cfg.MaxRequestBytes), totalLimit-count)
	}
}

func (k *kvServer) readRange(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	rt := k.s.store.Read()
	defer rt.End()
	return executeRange(rt, r)
}

// adjustChunkLimit doubles or halves the chunk size when the last chunk was
// far from the target size; it never returns less than 1.
func adjustChunkLimit(lastLimit int64, lastSize, targetSize int) int64 {
	switch {
	case lastSize < targetSize/2:
		lastLimit *= 2
	case lastSize > targetSize*2:
		lastLimit /= 2
	}
	return max(lastLimit, 1)
}

func (k *kvServer) Put(_ context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	s := k.s
	if err := s.checkQuota(r); err != nil {
		return nil, err
	}
	if err := checkPutRequest(r); err != nil {
		return nil, err
	}
	if err := s.propose(&pb.InternalRaftRequest{Put: r}); err != nil {
		return nil, err
	}
	if err := s.alarmGate(applyPut, 0); err != nil {
		return nil, err
	}
	resp, err := inWriteTxn(s, func(wt *mvcc.WriteTxn) (*pb.PutResponse, error) {
		if err := checkPut(wt, r); err != nil {
			return nil, err
		}
		return executePut(wt, r)
	})
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = s.header(resp.Header.Revision)
	return resp, nil
}

func (k *kvServer) DeleteRange(_ context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	s := k.s
	if err := checkDeleteRequest(r); err != nil {
		return nil, err
	}
	if err := s.propose(&pb.InternalRaftRequest{DeleteRange: r}); err != nil {
		return nil, err
	}
	if err := s.alarmGate(applyDelete, 0); err != nil {
		return nil, err
	}
	resp, err := inWriteTxn(s, func(wt *mvcc.WriteTxn) (*pb.DeleteRangeResponse, error) {
		return executeDelete(wt, r)
	})
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = s.header(resp.Header.Revision)
	return resp, nil
}

func (k *kvServer) Txn(_ context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	s := k.s
	if err := s.checkQuota(r); err != nil {
		return nil, err
	}
	if err := checkTxnRequest(r, s.cfg.MaxTxnOps); err != nil {
		return nil, err
	}
	// Overlap checks come after the op count check, which bounds their cost.
	if _, _, err := checkIntervals(r.Success); err != nil {
		return nil, err
	}
	if _, _, err := checkIntervals(r.Failure); err != nil {
		return nil, err
	}

	var resp *pb.TxnResponse
	var err error
	if isTxnReadonly(r) {
		// etcd serves these without raft, at the latest revision.
		rt := s.store.Read()
		resp, err = runTxn(readOnlyTxn{rt}, r, s.firstRev())
		rt.End()
	} else {
		if err := s.propose(&pb.InternalRaftRequest{Txn: r}); err != nil {
			return nil, err
		}
		if err := s.alarmGate(applyTxn, txnCost(r)); err != nil {
			return nil, err
		}
		resp, err = inWriteTxn(s, func(wt *mvcc.WriteTxn) (*pb.TxnResponse, error) {
			return runTxn(wt, r, s.firstRev())
		})
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = s.header(resp.Header.Revision)
	return resp, nil
}

func (k *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	s := k.s
	if err := s.propose(&pb.InternalRaftRequest{Compaction: r}); err != nil {
		return nil, err
	}
	if err := s.alarmGate(applyCompact, 0); err != nil {
		return nil, err
	}
	switch rev := r.Revision; {
	case rev < 0:
		// At or below etcd's initial compacted revision, -1.
		return nil, rpctypes.ErrGRPCCompacted
	case rev == 0:
		// etcd accepts one compaction at 0 on a store never compacted; it
		// removes nothing.
		if s.store.CompactRev() > 0 || !s.compactedZero.CompareAndSwap(false, true) {
			return nil, rpctypes.ErrGRPCCompacted
		}
	default:
		// etcd hashes the history it compacts away and answers HashKV at
		// the compaction revision with that hash from then on.
		prevFirst := s.firstRev()
		before, hashErr := s.store.HashKV(rev)
		done, err := s.store.Compact(rev)
		if err != nil {
			return nil, toGRPCError(err)
		}
		if hashErr == nil {
			before.CompactRevision = prevFirst
			s.compactHashes.add(before)
		}
		if r.Physical {
			select {
			case <-done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return &pb.CompactionResponse{Header: s.currentHeader()}, nil
}

// inWriteTxn runs fn in the store's write transaction and commits it; the
// commit's error counts only if fn succeeded.
func inWriteTxn[R any](s *Server, fn func(wt *mvcc.WriteTxn) (R, error)) (R, error) {
	wt := s.store.Write()
	resp, err := fn(wt)
	if endErr := wt.End(); err == nil {
		err = endErr
	}
	return resp, err
}
