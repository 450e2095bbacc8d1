package conformance

import (
	"context"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

func TestCompact(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	all := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}
	at := func(rev int64) *pb.RangeRequest {
		r := proto.Clone(all).(*pb.RangeRequest)
		r.Revision = rev
		return r
	}
	type step struct {
		name string
		c    call
	}
	fresh := []step{
		{"compact -1 on a fresh store", compactCall("-1", &pb.CompactionRequest{Revision: -1})},
		{"compact 2 on a fresh store (future)", compactCall("2", &pb.CompactionRequest{Revision: 2})},
		{"compact 0 on a fresh store", compactCall("0", &pb.CompactionRequest{Revision: 0})},
		{"compact 1 on a fresh store", compactCall("1", &pb.CompactionRequest{Revision: 1})},
		{"compact 1 again", compactCall("1", &pb.CompactionRequest{Revision: 1})},
		{"range at 1 after compacting at 1", rangeCall("at 1", at(1))},
	}
	for _, s := range fresh {
		t.Run(s.name, func(t *testing.T) { p.run(t, s.c) })
	}
	seedHistory(t, p) // revisions 2..9
	steps := []step{
		{"compact at 3", compactCall("at 3", &pb.CompactionRequest{Revision: 3})},
		{"range below", rangeCall("at 2", at(2))},
		{"range at", rangeCall("at 3", at(3))},
		{"range above", rangeCall("at 4", at(4))},
		{"range latest", rangeCall("latest", all)},
		{"count only below", rangeCall("count at 2", &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: 2, CountOnly: true})},
		{"serializable below", rangeCall("serializable at 2", &pb.RangeRequest{Key: b("a"), Revision: 2, Serializable: true})},
		{"compact at 3 again", compactCall("at 3", &pb.CompactionRequest{Revision: 3})},
		{"compact below", compactCall("at 2", &pb.CompactionRequest{Revision: 2})},
		{"compact future", compactCall("at 10", &pb.CompactionRequest{Revision: 10})},
		{"compact far future", compactCall("at 1<<40", &pb.CompactionRequest{Revision: 1 << 40})},
		{"compact physical at 5 (a deleted at 5)", compactCall("at 5", &pb.CompactionRequest{Revision: 5, Physical: true})},
		{"range at 4", rangeCall("at 4", at(4))},
		{"range at 5", rangeCall("at 5", at(5))},
		{"range a at 5", rangeCall("a at 5", &pb.RangeRequest{Key: b("a"), Revision: 5})},
		{"range at 6", rangeCall("at 6", at(6))},
		{"txn range below", txnCall("range at 4", &pb.TxnRequest{Success: []*pb.RequestOp{opRangeReq(&pb.RangeRequest{Key: b("a"), Revision: 4})}})},
		{"txn put and range below", txnCall("put, range at 4", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("x", "1"), opRangeReq(&pb.RangeRequest{Key: b("a"), Revision: 4})}})},
		{"txn range below in other branch", txnCall("range at 4 not taken", &pb.TxnRequest{Failure: []*pb.RequestOp{opRangeReq(&pb.RangeRequest{Key: b("a"), Revision: 4})}})},
		{"compact at current", compactCall("at 9", &pb.CompactionRequest{Revision: 9, Physical: true})},
		{"range at current", rangeCall("at 9", at(9))},
		{"range at 8", rangeCall("at 8", at(8))},
		{"put after compaction", putCall("a", &pb.PutRequest{Key: b("a"), Value: b("after"), PrevKv: true})},
		{"delete after compaction", deleteCall("d", &pb.DeleteRangeRequest{Key: b("d"), PrevKv: true})},
		{"history after compaction", rangeCall("at 10", at(10))},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) { p.run(t, s.c) })
	}
	t.Run("clientv3", func(t *testing.T) {
		for _, rev := range []int64{10, 10, 99} {
			p.run(t, call{desc: fmt.Sprintf("clientv3 Compact(%d, physical)", rev), do: func(ctx context.Context, tg *target) (proto.Message, error) {
				resp, err := tg.cli.Compact(ctx, rev, clientv3.WithCompactPhysical())
				if err != nil {
					return nil, err
				}
				return (*pb.CompactionResponse)(resp), nil
			}})
		}
		p.run(t, call{desc: "clientv3 Get at compacted revision", do: func(ctx context.Context, tg *target) (proto.Message, error) {
			resp, err := tg.cli.Get(ctx, "a", clientv3.WithRev(9))
			if err != nil {
				return nil, err
			}
			return (*pb.RangeResponse)(resp), nil
		}})
	})
}
