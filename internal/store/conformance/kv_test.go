package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// seedKV writes a fixed history (revisions 2..12) with ties on every sort
// target: several keys created in one revision, equal values and versions,
// a deleted and re-created key, 15 keys under "p/" created together (more
// than the 12 below which Go's sort is an insertion sort), a binary key and
// an empty value.
func seedKV(t *testing.T, p *pair) {
	t.Helper()
	put := func(k, v string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: b(k), Value: b(v)}}}
	}
	p.put(t, "a", "1")                                                                                                     // 2
	p.put(t, "b", "2")                                                                                                     // 3
	p.run(t, txnCall("seed c,d,e", &pb.TxnRequest{Success: []*pb.RequestOp{put("c", "1"), put("d", "2"), put("e", "1")}})) // 4
	p.put(t, "a", "3")                                                                                                     // 5
	p.put(t, "b", "2")                                                                                                     // 6
	p.run(t, deleteCall("seed d", &pb.DeleteRangeRequest{Key: b("d")}))                                                    // 7
	p.put(t, "d", "0")                                                                                                     // 8
	var ps []*pb.RequestOp
	for i := 0; i < 15; i++ {
		ps = append(ps, put(fmt.Sprintf("p/%02d", i), fmt.Sprint(i%3)))
	}
	p.run(t, txnCall("seed p/", &pb.TxnRequest{Success: ps})) // 9
	p.put(t, "p/03", "x")                                     // 10
	p.put(t, "\x00", "zero")                                  // 11
	p.put(t, "f", "")                                         // 12
	p.put(t, "\xff\xfe", "high")                              // 13
	if rev := p.rev(t); rev != 13 {
		t.Fatalf("seeded revision %d, want 13", rev)
	}
}

var (
	sortTargets = []pb.RangeRequest_SortTarget{pb.RangeRequest_KEY, pb.RangeRequest_VERSION, pb.RangeRequest_CREATE, pb.RangeRequest_MOD, pb.RangeRequest_VALUE}
	sortOrders  = []pb.RangeRequest_SortOrder{pb.RangeRequest_NONE, pb.RangeRequest_ASCEND, pb.RangeRequest_DESCEND}
)

// rangeCase is one row of a Range table.
type rangeCase struct {
	name string
	req  *pb.RangeRequest
}

func TestKVRange(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	seedKV(t, p)

	all := func(r *pb.RangeRequest) *pb.RangeRequest {
		r.Key, r.RangeEnd = []byte{0}, []byte{0}
		return r
	}
	cases := []rangeCase{
		{"single key", &pb.RangeRequest{Key: b("a")}},
		{"single missing key", &pb.RangeRequest{Key: b("zz")}},
		{"single binary key", &pb.RangeRequest{Key: []byte{0}}},
		{"single key with empty value", &pb.RangeRequest{Key: b("f")}},
		{"range [a,c)", &pb.RangeRequest{Key: b("a"), RangeEnd: b("c")}},
		{"range [b,e]", &pb.RangeRequest{Key: b("b"), RangeEnd: b("e\x00")}},
		{"range end equals key", &pb.RangeRequest{Key: b("a"), RangeEnd: b("a")}},
		{"range end before key", &pb.RangeRequest{Key: b("d"), RangeEnd: b("b")}},
		{"from key c", &pb.RangeRequest{Key: b("c"), RangeEnd: []byte{0}}},
		{"from key \\x00 (all)", all(&pb.RangeRequest{})},
		{"from key past the end", &pb.RangeRequest{Key: b("\xff\xff"), RangeEnd: []byte{0}}},
		{"prefix p/", &pb.RangeRequest{Key: b("p/"), RangeEnd: b("p0")}},
		{"prefix \\xff (range end \\x00)", &pb.RangeRequest{Key: b("\xff"), RangeEnd: []byte{0}}},
		{"limit 1", all(&pb.RangeRequest{Limit: 1})},
		{"limit 3", all(&pb.RangeRequest{Limit: 3})},
		{"limit equal to count", &pb.RangeRequest{Key: b("a"), RangeEnd: b("c"), Limit: 2}},
		{"limit above count", &pb.RangeRequest{Key: b("a"), RangeEnd: b("c"), Limit: 5}},
		{"negative limit", all(&pb.RangeRequest{Limit: -1})},
		{"limit on single key", &pb.RangeRequest{Key: b("a"), Limit: 1}},
		{"keys only", all(&pb.RangeRequest{KeysOnly: true})},
		{"keys only limit", all(&pb.RangeRequest{KeysOnly: true, Limit: 2})},
		{"count only", all(&pb.RangeRequest{CountOnly: true})},
		{"count only limit", all(&pb.RangeRequest{CountOnly: true, Limit: 2})},
		{"count only and keys only", all(&pb.RangeRequest{CountOnly: true, KeysOnly: true})},
		{"count only single key", &pb.RangeRequest{Key: b("a"), CountOnly: true}},
		{"count only missing key", &pb.RangeRequest{Key: b("zz"), CountOnly: true}},
		{"serializable", all(&pb.RangeRequest{Serializable: true})},
		{"serializable historic", all(&pb.RangeRequest{Serializable: true, Revision: 4})},
		{"revision current", all(&pb.RangeRequest{Revision: 13})},
		{"revision future", all(&pb.RangeRequest{Revision: 14})},
		{"revision far future", &pb.RangeRequest{Key: b("a"), Revision: 1 << 40}},
		{"negative revision", all(&pb.RangeRequest{Revision: -1})},
		{"historic limit", all(&pb.RangeRequest{Revision: 6, Limit: 2})},
		{"historic keys only", all(&pb.RangeRequest{Revision: 6, KeysOnly: true})},
		{"historic count only", all(&pb.RangeRequest{Revision: 9, CountOnly: true})},
		{"historic deleted key", &pb.RangeRequest{Key: b("d"), Revision: 7}},
		{"historic before creation", &pb.RangeRequest{Key: b("d"), Revision: 3}},
		{"min mod revision", all(&pb.RangeRequest{MinModRevision: 9})},
		{"max mod revision", all(&pb.RangeRequest{MaxModRevision: 5})},
		{"min create revision", all(&pb.RangeRequest{MinCreateRevision: 8})},
		{"max create revision", all(&pb.RangeRequest{MaxCreateRevision: 4})},
		{"mod revision window", all(&pb.RangeRequest{MinModRevision: 4, MaxModRevision: 9})},
		{"create revision window with limit", all(&pb.RangeRequest{MinCreateRevision: 3, MaxCreateRevision: 9, Limit: 2})},
		{"revision filters keys only", all(&pb.RangeRequest{MinModRevision: 9, KeysOnly: true})},
		{"revision filters count only", all(&pb.RangeRequest{MinModRevision: 9, CountOnly: true})},
		{"revision filters at historic revision", all(&pb.RangeRequest{MaxModRevision: 4, Revision: 8})},
		{"revision filters exclude all", all(&pb.RangeRequest{MinModRevision: 100})},
		{"filter and sort with limit", all(&pb.RangeRequest{MinCreateRevision: 4, SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_DESCEND, Limit: 4})},
		{"keys only sorted by value", all(&pb.RangeRequest{KeysOnly: true, SortTarget: pb.RangeRequest_VALUE})},
		{"invalid sort order", all(&pb.RangeRequest{SortOrder: 7})},
		{"invalid sort target", all(&pb.RangeRequest{SortTarget: 9})},
		{"empty key", &pb.RangeRequest{}},
		{"empty key with range end", &pb.RangeRequest{RangeEnd: b("b")}},
	}
	for _, tg := range sortTargets {
		for _, o := range sortOrders {
			name := fmt.Sprintf("sort %s %s", tg, o)
			cases = append(cases,
				rangeCase{name + " all", all(&pb.RangeRequest{SortTarget: tg, SortOrder: o})},
				rangeCase{name + " 15 ties", &pb.RangeRequest{Key: b("p/"), RangeEnd: b("p0"), SortTarget: tg, SortOrder: o}},
				rangeCase{name + " limit 4", all(&pb.RangeRequest{SortTarget: tg, SortOrder: o, Limit: 4})},
				rangeCase{name + " historic", all(&pb.RangeRequest{SortTarget: tg, SortOrder: o, Revision: 9})},
			)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p.run(t, rangeCall(c.name, c.req))
		})
	}
	for rev := int64(0); rev <= 14; rev++ {
		t.Run(fmt.Sprintf("every revision/%d", rev), func(t *testing.T) {
			p.run(t, rangeCall(fmt.Sprintf("all at revision %d", rev), all(&pb.RangeRequest{Revision: rev})))
		})
	}
}

// TestKVRangeClientv3 checks the requests clientv3 builds for its options
// (as kube-apiserver sends them), and the error clientv3 surfaces.
func TestKVRangeClientv3(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	seedKV(t, p)
	cases := []struct {
		name string
		key  string
		opts []clientv3.OpOption
	}{
		{"get", "a", nil},
		{"prefix", "p/", []clientv3.OpOption{clientv3.WithPrefix()}},
		{"prefix limit", "p/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(5)}},
		{"prefix count only", "p/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}},
		{"from key", "c", []clientv3.OpOption{clientv3.WithFromKey()}},
		{"range", "a", []clientv3.OpOption{clientv3.WithRange("d")}},
		{"rev", "", []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithRev(5)}},
		{"future rev", "a", []clientv3.OpOption{clientv3.WithRev(99)}},
		{"serializable keys only", "a", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithKeysOnly()}},
		{"first create", "p/", clientv3.WithFirstCreate()},
		{"last create", "p/", clientv3.WithLastCreate()},
		{"first rev", "", clientv3.WithFirstRev()},
		{"last key", "", clientv3.WithLastKey()},
		{"sort by mod desc", "\x00", []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend)}},
		{"min mod rev", "\x00", []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithMinModRev(9)}},
		{"empty key", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p.run(t, call{desc: fmt.Sprintf("clientv3 Get(%q) %s", c.key, c.name), do: func(ctx context.Context, tg *target) (proto.Message, error) {
				resp, err := tg.cli.Get(ctx, c.key, c.opts...)
				if err != nil {
					return nil, err
				}
				return (*pb.RangeResponse)(resp), nil
			}})
		})
	}
}

func TestKVPut(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	for _, id := range []int64{100, 200} {
		p.run(t, grantCall(fmt.Sprintf("lease %d", id), &pb.LeaseGrantRequest{ID: id, TTL: 3600}))
	}
	// Each row runs on the state the previous rows left.
	cases := []struct {
		name string
		req  *pb.PutRequest
	}{
		{"new key", &pb.PutRequest{Key: b("k"), Value: b("v1")}},
		{"overwrite", &pb.PutRequest{Key: b("k"), Value: b("v2")}},
		{"prev kv", &pb.PutRequest{Key: b("k"), Value: b("v3"), PrevKv: true}},
		{"prev kv on new key", &pb.PutRequest{Key: b("n"), Value: b("x"), PrevKv: true}},
		{"same value again", &pb.PutRequest{Key: b("n"), Value: b("x"), PrevKv: true}},
		{"with lease", &pb.PutRequest{Key: b("l"), Value: b("1"), Lease: 100, PrevKv: true}},
		{"ignore value", &pb.PutRequest{Key: b("l"), IgnoreValue: true, PrevKv: true}},
		{"ignore value changes lease", &pb.PutRequest{Key: b("l"), IgnoreValue: true, Lease: 200, PrevKv: true}},
		{"ignore lease keeps lease", &pb.PutRequest{Key: b("l"), Value: b("2"), IgnoreLease: true, PrevKv: true}},
		{"ignore value and lease", &pb.PutRequest{Key: b("l"), IgnoreValue: true, IgnoreLease: true, PrevKv: true}},
		{"without lease detaches", &pb.PutRequest{Key: b("l"), Value: b("3"), PrevKv: true}},
		{"ignore value on missing key", &pb.PutRequest{Key: b("missing"), IgnoreValue: true}},
		{"ignore lease on missing key", &pb.PutRequest{Key: b("missing"), Value: b("v"), IgnoreLease: true}},
		{"ignore value with value", &pb.PutRequest{Key: b("k"), Value: b("v"), IgnoreValue: true}},
		{"ignore lease with lease", &pb.PutRequest{Key: b("k"), Value: b("v"), Lease: 100, IgnoreLease: true}},
		{"unknown lease", &pb.PutRequest{Key: b("k"), Value: b("v"), Lease: 12345}},
		{"unknown lease on missing key", &pb.PutRequest{Key: b("missing"), Value: b("v"), Lease: 12345}},
		{"empty key", &pb.PutRequest{Value: b("v")}},
		{"empty key ignore value", &pb.PutRequest{IgnoreValue: true}},
		{"empty value", &pb.PutRequest{Key: b("e"), PrevKv: true}},
		{"binary key and value", &pb.PutRequest{Key: []byte{0, 1, 0xff}, Value: []byte{0, 0xfe}, PrevKv: true}},
		{"key \\x00", &pb.PutRequest{Key: []byte{0}, Value: b("z"), PrevKv: true}},
		{"large value", &pb.PutRequest{Key: b("big"), Value: make([]byte, 512*1024)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p.run(t, putCall(c.name, c.req))
		})
	}
	p.run(t, rangeCall("final state", &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}))
	p.run(t, call{desc: "clientv3 Put with prev kv", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := tg.cli.Put(ctx, "k", "v9", clientv3.WithPrevKV())
		if err != nil {
			return nil, err
		}
		return (*pb.PutResponse)(resp), nil
	}})
	p.run(t, call{desc: "clientv3 Put with unknown lease", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := tg.cli.Put(ctx, "k", "v9", clientv3.WithLease(999))
		if err != nil {
			return nil, err
		}
		return (*pb.PutResponse)(resp), nil
	}})
}

func TestKVDeleteRange(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	seedKV(t, p)
	cases := []struct {
		name string
		req  *pb.DeleteRangeRequest
	}{
		{"single key", &pb.DeleteRangeRequest{Key: b("a")}},
		{"same key again (nothing to delete)", &pb.DeleteRangeRequest{Key: b("a"), PrevKv: true}},
		{"missing key", &pb.DeleteRangeRequest{Key: b("zz")}},
		{"single key prev kv", &pb.DeleteRangeRequest{Key: b("b"), PrevKv: true}},
		{"empty range", &pb.DeleteRangeRequest{Key: b("c"), RangeEnd: b("c")}},
		{"inverted range", &pb.DeleteRangeRequest{Key: b("e"), RangeEnd: b("c"), PrevKv: true}},
		{"range [c,e) prev kv", &pb.DeleteRangeRequest{Key: b("c"), RangeEnd: b("e"), PrevKv: true}},
		{"prefix p/1", &pb.DeleteRangeRequest{Key: b("p/1"), RangeEnd: b("p/2"), PrevKv: true}},
		{"from key p/05", &pb.DeleteRangeRequest{Key: b("p/05"), RangeEnd: []byte{0}}},
		{"range with nothing in it", &pb.DeleteRangeRequest{Key: b("g"), RangeEnd: b("h"), PrevKv: true}},
		{"empty key", &pb.DeleteRangeRequest{}},
		{"empty key with range end", &pb.DeleteRangeRequest{RangeEnd: b("z")}},
		{"everything", &pb.DeleteRangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, PrevKv: true}},
		{"everything again", &pb.DeleteRangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, PrevKv: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p.run(t, deleteCall(c.name, c.req))
		})
	}
	for rev := int64(12); rev <= 20; rev++ {
		p.run(t, rangeCall(fmt.Sprintf("history at %d", rev), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}))
	}
	p.run(t, call{desc: "clientv3 Delete prefix with prev kv", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := tg.cli.Delete(ctx, "p/", clientv3.WithPrefix(), clientv3.WithPrevKV())
		if err != nil {
			return nil, err
		}
		return (*pb.DeleteRangeResponse)(resp), nil
	}})
}

// TestKVRangeStream compares the RangeStream RPC (new in etcd 3.7, used by
// clientv3's GetStream). The chunking is compared only through the merged
// result: all chunks' KVs in order, and the last chunk's header, count and
// more.
func TestKVRangeStream(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	seedKV(t, p)
	all := func(r *pb.RangeRequest) *pb.RangeRequest {
		r.Key, r.RangeEnd = []byte{0}, []byte{0}
		return r
	}
	cases := []rangeCase{
		{"all (23 keys, several chunks)", all(&pb.RangeRequest{})},
		{"single key", &pb.RangeRequest{Key: b("a")}},
		{"missing key", &pb.RangeRequest{Key: b("zz")}},
		{"prefix p/", &pb.RangeRequest{Key: b("p/"), RangeEnd: b("p0")}},
		{"limit 3", all(&pb.RangeRequest{Limit: 3})},
		{"limit 10", all(&pb.RangeRequest{Limit: 10})},
		{"limit 15", all(&pb.RangeRequest{Limit: 15})},
		{"limit 22", all(&pb.RangeRequest{Limit: 22})},
		{"limit 30", all(&pb.RangeRequest{Limit: 30})},
		{"keys only", all(&pb.RangeRequest{KeysOnly: true})},
		{"count only", all(&pb.RangeRequest{CountOnly: true})},
		{"historic", all(&pb.RangeRequest{Revision: 9})},
		{"historic limit 12", all(&pb.RangeRequest{Revision: 10, Limit: 12})},
		{"serializable", all(&pb.RangeRequest{Serializable: true})},
		{"future revision", all(&pb.RangeRequest{Revision: 99})},
		{"sort ascending by key", all(&pb.RangeRequest{SortOrder: pb.RangeRequest_ASCEND})},
		{"sort descending", all(&pb.RangeRequest{SortOrder: pb.RangeRequest_DESCEND})},
		{"sort by value", all(&pb.RangeRequest{SortTarget: pb.RangeRequest_VALUE})},
		{"revision filter", all(&pb.RangeRequest{MinModRevision: 3})},
		{"empty key", &pb.RangeRequest{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p.run(t, call{desc: "RangeStream " + c.name, req: c.req, do: func(ctx context.Context, tg *target) (proto.Message, error) {
				return rangeStream(ctx, tg, c.req)
			}})
		})
	}
}

// rangeStream reads a RangeStream to the end and merges its chunks. Headers
// on chunks other than the last are reported as an error.
func rangeStream(ctx context.Context, tg *target, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	s, err := tg.kv.RangeStream(ctx, r)
	if err != nil {
		return nil, err
	}
	merged := &pb.RangeResponse{}
	var last *pb.RangeResponse
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if last != nil && last.Header != nil {
			return nil, fmt.Errorf("chunk after the one with the header")
		}
		last = m.RangeResponse
		if last == nil {
			return nil, fmt.Errorf("chunk without range_response")
		}
		merged.Kvs = append(merged.Kvs, last.Kvs...)
	}
	if last == nil {
		return nil, fmt.Errorf("empty stream")
	}
	merged.Header, merged.Count, merged.More = last.Header, last.Count, last.More
	return merged, nil
}
