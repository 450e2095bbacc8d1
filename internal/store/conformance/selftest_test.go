package conformance

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// TestHarnessDetectsAndShrinks checks the harness itself, etcd against etcd
// with an injected fault: the system under test drops prev_kv from puts of
// keys starting with "a". The random run must notice, shrink the sequence to
// the two or three operations that matter, and the saved form must replay.
func TestHarnessDetectsAndShrinks(t *testing.T) {
	cfg := runConfig{
		opts: serverOpts{FastElection: true, SUTEtcd: true},
		fault: func(c call, o *outcome) {
			if r, ok := c.req.(*pb.PutRequest); ok && bytes.HasPrefix(r.Key, b("a")) && o.err == nil {
				resp := proto.Clone(o.resp).(*pb.PutResponse)
				resp.PrevKv = nil
				o.resp = resp
			}
		},
	}
	var (
		ops []genOp
		f   *failure
	)
	for seed := uint64(1); seed <= 5 && f == nil; seed++ {
		ops, f = runSequence(t, cfg, newGenerator(seed), 300)
	}
	if f == nil {
		t.Fatal("injected fault not detected")
	}
	if !strings.Contains(f.report, "prev_kv") {
		t.Errorf("report does not show the dropped prev_kv:\n%s", f.report)
	}
	small, runs := shrink(t, cfg, ops[:f.step+1], 60*time.Second)
	t.Logf("shrunk %d ops to %d in %d runs:\n%s", f.step+1, len(small.ops), runs, formatOps(small.ops))
	if small.fail == nil || len(small.ops) > 3 {
		t.Errorf("shrinking left %d ops, want at most 3", len(small.ops))
	}
	data, err := json.Marshal(small.ops)
	if err != nil {
		t.Fatal(err)
	}
	var back []genOp
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if formatOps(back) != formatOps(small.ops) {
		t.Errorf("JSON round trip changed the sequence:\n%s\nvs\n%s", formatOps(back), formatOps(small.ops))
	}
	if _, f := runSequence(t, cfg, &replay{ops: back}, len(back)); f == nil {
		t.Errorf("replayed minimal sequence shows no difference")
	}
}

// TestHarnessNormalize checks that normalization clears exactly the
// cluster-specific header fields, also in nested transaction responses.
func TestHarnessNormalize(t *testing.T) {
	h := func(rev int64) *pb.ResponseHeader {
		return &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: rev, RaftTerm: 3}
	}
	in := &pb.TxnResponse{Header: h(5), Responses: []*pb.ResponseOp{
		{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: h(4)}}},
		{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{Header: h(0), Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: h(6)}}},
		}}}},
	}}
	want := &pb.TxnResponse{Header: &pb.ResponseHeader{Revision: 5}, Responses: []*pb.ResponseOp{
		{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 4}}}},
		{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{Header: &pb.ResponseHeader{}, Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 6}}}},
		}}}},
	}}
	if d := protoDiff(want, normalize(in)); d != "" {
		t.Errorf("normalize (-want +got):\n%s", d)
	}
	if in.Header.ClusterId != 1 {
		t.Errorf("normalize modified its input")
	}
}
