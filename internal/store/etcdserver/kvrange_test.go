package etcdserver

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/herd-project/herd/internal/store/mvcc"
)

// rangeFixture: keys a..e written in this order, then a and c rewritten, so
// that versions, create and mod revisions and values all order differently
// from keys and have ties.
//
//	key  value  create  mod  version  lease
//	a    "3"    2       7    2        0
//	b    "1"    3       3    1        5
//	c    "1"    4       8    2        0
//	d    "2"    5       5    1        0
//	e    "0"    6       6    1        5
func rangeFixture() *memKV {
	m := newMemKV(1)
	m.leases[5] = true
	m.put("a", "x", 0)
	m.put("b", "1", 5)
	m.put("c", "x", 0)
	m.put("d", "2", 0)
	m.put("e", "0", 5)
	m.put("a", "3", 0)
	m.put("c", "1", 0)
	return m
}

func keysOf(kvs []*mvccpb.KeyValue) string {
	var b strings.Builder
	for _, kv := range kvs {
		b.Write(kv.Key)
	}
	return b.String()
}

func TestExecuteRange(t *testing.T) {
	all := func(r *pb.RangeRequest) *pb.RangeRequest {
		r.Key, r.RangeEnd = []byte("a"), []byte("\x00")
		return r
	}
	tests := []struct {
		name      string
		r         *pb.RangeRequest
		wantKeys  string
		wantCount int64
		wantMore  bool
	}{
		{"single key", &pb.RangeRequest{Key: []byte("b")}, "b", 1, false},
		{"missing key", &pb.RangeRequest{Key: []byte("zz")}, "", 0, false},
		{"half-open range", &pb.RangeRequest{Key: []byte("b"), RangeEnd: []byte("d")}, "bc", 2, false},
		{"from key", &pb.RangeRequest{Key: []byte("c"), RangeEnd: []byte("\x00")}, "cde", 3, false},
		{"all", all(&pb.RangeRequest{}), "abcde", 5, false},
		{"limit", all(&pb.RangeRequest{Limit: 2}), "ab", 5, true},
		{"limit equal to count", all(&pb.RangeRequest{Limit: 5}), "abcde", 5, false},
		{"limit above count", all(&pb.RangeRequest{Limit: 9}), "abcde", 5, false},
		{"max limit", all(&pb.RangeRequest{Limit: math.MaxInt64}), "abcde", 5, false},
		{"negative limit is none", all(&pb.RangeRequest{Limit: -1}), "abcde", 5, false},
		{"count only", all(&pb.RangeRequest{CountOnly: true, Limit: 1}), "", 5, false},
		{"key descend", all(&pb.RangeRequest{SortOrder: pb.RangeRequest_DESCEND}), "edcba", 5, false},
		{"key ascend", all(&pb.RangeRequest{SortOrder: pb.RangeRequest_ASCEND, Limit: 3}), "abc", 5, true},
		{"key none", all(&pb.RangeRequest{SortOrder: pb.RangeRequest_NONE, SortTarget: pb.RangeRequest_KEY}), "abcde", 5, false},
		{"create descend", all(&pb.RangeRequest{SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_CREATE}), "edcba", 5, false},
		{"mod ascend", all(&pb.RangeRequest{SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_MOD}), "bdeac", 5, false},
		{"mod descend limit", all(&pb.RangeRequest{SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_MOD, Limit: 2}), "ca", 5, true},
		{"value ascend", all(&pb.RangeRequest{SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_VALUE}), "ebcda", 5, false},
		// A target without an order sorts ascending, but only the first
		// limit+1 keys are fetched, as in etcd.
		{"mod none limit", all(&pb.RangeRequest{SortTarget: pb.RangeRequest_MOD, Limit: 2}), "ba", 5, true},
		{"min mod", all(&pb.RangeRequest{MinModRevision: 6}), "ace", 5, false},
		{"max mod", all(&pb.RangeRequest{MaxModRevision: 5}), "bd", 5, false},
		{"min create", all(&pb.RangeRequest{MinCreateRevision: 4}), "cde", 5, false},
		{"max create", all(&pb.RangeRequest{MaxCreateRevision: 3}), "ab", 5, false},
		{"filters and limit", all(&pb.RangeRequest{MinCreateRevision: 3, Limit: 2}), "bc", 5, true},
		{"filters limit exact", all(&pb.RangeRequest{MinCreateRevision: 5, Limit: 2}), "de", 5, false},
		{"negative revision reads latest", &pb.RangeRequest{Key: []byte("a"), Revision: -4}, "a", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := rangeFixture()
			resp, err := executeRange(m, tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(resp.Kvs); got != tt.wantKeys {
				t.Errorf("keys = %q, want %q", got, tt.wantKeys)
			}
			if resp.Count != tt.wantCount || resp.More != tt.wantMore {
				t.Errorf("count, more = %d, %v; want %d, %v", resp.Count, resp.More, tt.wantCount, tt.wantMore)
			}
			if resp.Header.GetRevision() != m.Rev() {
				t.Errorf("header revision = %d, want %d", resp.Header.GetRevision(), m.Rev())
			}
		})
	}
}

// TestSortTies checks that equal sort keys keep etcd's order: sort.Sort and
// sort.Reverse over the key-ordered input.
func TestSortTies(t *testing.T) {
	for _, order := range []pb.RangeRequest_SortOrder{pb.RangeRequest_ASCEND, pb.RangeRequest_DESCEND} {
		for _, target := range []pb.RangeRequest_SortTarget{pb.RangeRequest_VERSION, pb.RangeRequest_VALUE, pb.RangeRequest_MOD} {
			m := newMemKV(1)
			// 40 keys with 3 distinct values and versions: many ties.
			for i := range 40 {
				k := string(rune('A' + i))
				m.put(k, string(rune('0'+i%3)), 0)
				if i%2 == 0 {
					m.put(k, string(rune('0'+i%3)), 0)
				}
			}
			r := &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), SortOrder: order, SortTarget: target}
			resp, err := executeRange(m, r)
			if err != nil {
				t.Fatal(err)
			}
			// Reference: etcd's algorithm on the key-ordered input.
			ref, _ := m.Range(r.Key, r.RangeEnd, mvcc.RangeOptions{})
			want := slices.Clone(ref.KVs)
			sortKVs(want, r)
			if keysOf(resp.Kvs) != keysOf(want) {
				t.Fatalf("%v %v: got %q, want %q", order, target, keysOf(resp.Kvs), keysOf(want))
			}
			less := map[pb.RangeRequest_SortTarget]func(a, b *mvccpb.KeyValue) bool{
				pb.RangeRequest_VERSION: func(a, b *mvccpb.KeyValue) bool { return a.Version < b.Version },
				pb.RangeRequest_VALUE:   func(a, b *mvccpb.KeyValue) bool { return string(a.Value) < string(b.Value) },
				pb.RangeRequest_MOD:     func(a, b *mvccpb.KeyValue) bool { return a.ModRevision < b.ModRevision },
			}[target]
			for i := 1; i < len(resp.Kvs); i++ {
				a, b := resp.Kvs[i-1], resp.Kvs[i]
				if order == pb.RangeRequest_DESCEND {
					a, b = b, a
				}
				if less(b, a) {
					t.Fatalf("%v %v: not sorted at %d", order, target, i)
				}
			}
		}
	}
}

func TestKeysOnly(t *testing.T) {
	tests := []struct {
		name      string
		target    pb.RangeRequest_SortTarget
		order     pb.RangeRequest_SortOrder
		wantLease int64
	}{
		// etcd answers these from its index: the lease is dropped too.
		{"key order", pb.RangeRequest_KEY, pb.RangeRequest_NONE, 0},
		{"sorted by version", pb.RangeRequest_VERSION, pb.RangeRequest_DESCEND, 0},
		// Sorting by value needs the values: the lease stays.
		{"sorted by value", pb.RangeRequest_VALUE, pb.RangeRequest_ASCEND, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := rangeFixture()
			before, _ := m.Range([]byte("b"), nil, mvcc.RangeOptions{})
			resp, err := executeRange(m, &pb.RangeRequest{Key: []byte("b"), KeysOnly: true, SortTarget: tt.target, SortOrder: tt.order})
			if err != nil {
				t.Fatal(err)
			}
			kv := resp.Kvs[0]
			if kv.Value != nil || kv.Lease != tt.wantLease || kv.Version != 1 || kv.CreateRevision != 3 {
				t.Fatalf("kv = %v, want no value and lease %d", kv, tt.wantLease)
			}
			if string(before.KVs[0].Value) != "1" {
				t.Fatal("keys_only modified the engine's KeyValue")
			}
		})
	}
}

func TestExecuteRangeErrors(t *testing.T) {
	m := rangeFixture()
	m.compactRev = 4
	if _, err := executeRange(m, &pb.RangeRequest{Key: []byte("a"), Revision: m.Rev() + 1}); !errors.Is(err, mvcc.ErrFutureRev) {
		t.Fatalf("future revision: %v", err)
	}
	if _, err := executeRange(m, &pb.RangeRequest{Key: []byte("a"), Revision: 3}); !errors.Is(err, mvcc.ErrCompacted) {
		t.Fatalf("compacted revision: %v", err)
	}
}

func TestAdjustChunkLimit(t *testing.T) {
	tests := []struct {
		limit      int64
		size, goal int
		want       int64
	}{
		{10, 100, 1000, 20},
		{10, 600, 1000, 10},
		{10, 1999, 1000, 10},
		{10, 2001, 1000, 5},
		{1, 5000, 1000, 1},
	}
	for _, tt := range tests {
		if got := adjustChunkLimit(tt.limit, tt.size, tt.goal); got != tt.want {
			t.Errorf("adjustChunkLimit(%d, %d, %d) = %d, want %d", tt.limit, tt.size, tt.goal, got, tt.want)
		}
	}
}
