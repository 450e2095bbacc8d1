package conformance

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// TestRestart restarts both systems on their data directories and compares
// what must survive: the history since the last compaction, the compaction
// revision, leases (with their keys) and the revision counter; and that each
// system keeps its cluster and member IDs.
func TestRestart(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	seedHistory(t, p)
	p.run(t, grantCall("lease 5", &pb.LeaseGrantRequest{ID: 5, TTL: 600}))
	p.run(t, grantCall("lease 6", &pb.LeaseGrantRequest{ID: 6, TTL: 900}))
	p.run(t, putCall("with lease 5", &pb.PutRequest{Key: b("l1"), Value: b("v"), Lease: 5}))
	p.run(t, putCall("with lease 5", &pb.PutRequest{Key: b("l2"), Value: b("v"), Lease: 5}))
	p.run(t, compactCall("at 4", &pb.CompactionRequest{Revision: 4, Physical: true}))
	p.run(t, revokeCall("lease 6", "", 6))
	ids := func(tg *target) [2]uint64 {
		resp, err := tg.kv.Range(context.Background(), &pb.RangeRequest{Key: b("a")})
		if err != nil {
			t.Fatalf("%s: %v", tg.name, err)
		}
		return [2]uint64{resp.Header.ClusterId, resp.Header.MemberId}
	}
	before := [2][2]uint64{ids(p.ref), ids(p.sut)}

	p.restart(t)

	after := [2][2]uint64{ids(p.ref), ids(p.sut)}
	if before[0] != after[0] {
		t.Errorf("reference changed cluster/member ID on restart: %x -> %x", before[0], after[0])
	}
	if before[1] != after[1] {
		t.Errorf("DIFFERENCE: %s changed cluster/member ID on restart: %x -> %x (etcd keeps them)", p.sut.name, before[1], after[1])
	}
	rev := p.rev(t)
	for r := int64(3); r <= rev+1; r++ {
		p.run(t, rangeCall(fmt.Sprintf("all at %d after restart", r), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: r}))
	}
	p.run(t, compactCall("at 4 again (already compacted)", &pb.CompactionRequest{Revision: 4}))
	p.run(t, leasesCall("after restart", true))
	p.run(t, ttlCall("lease 5 after restart", "", 5, true))
	p.run(t, ttlCall("revoked lease 6 after restart", "", 6, true))
	p.run(t, grantCall("lease 5 again", &pb.LeaseGrantRequest{ID: 5, TTL: 60}))
	p.run(t, putCall("after restart", &pb.PutRequest{Key: b("a"), Value: b("new"), PrevKv: true}))
	p.run(t, revokeCall("lease 5 after restart", "", 5))
	p.run(t, rangeCall("all after restart and writes", &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}))
	p.run(t, call{desc: "HashKV after restart", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		return tg.maint.HashKV(ctx, &pb.HashKVRequest{})
	}})
	p.compareWatch(t, "replay after restart", &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: 4, PrevKv: true})
}

// TestLeaseRestart checks the remaining TTL of a lease after a restart: etcd
// renews every lease when its member becomes leader, so a restarted lease
// has its full TTL again. Time must pass between grant and restart for
// that to show: the test waits for a short lease to expire first.
func TestLeaseRestart(t *testing.T) {
	t.Parallel()
	p := newPair(t, serverOpts{})
	p.run(t, grantCall("long lease 5", &pb.LeaseGrantRequest{ID: 5, TTL: 600}))
	p.run(t, grantCall("short lease 7", &pb.LeaseGrantRequest{ID: 7, TTL: 2}))
	p.run(t, putCall("with short lease", &pb.PutRequest{Key: b("s"), Lease: 7}))
	waitExpired(t, p, "s", p.rev(t))
	p.run(t, ttlCall("long lease before restart", "", 5, false))
	p.restart(t)
	p.run(t, ttlCall("long lease after restart (renewed by etcd)", "", 5, false))
	p.run(t, leasesCall("after restart", true))
}

// waitExpired waits (up to 20s) on both systems for the delete event of key,
// written at revision rev with a short lease.
func waitExpired(t *testing.T, p *pair, key string, rev int64) {
	t.Helper()
	var (
		mu   sync.Mutex
		errs []string
	)
	p.both(func(tg *target) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := collectEvents(ctx, tg, &pb.WatchCreateRequest{Key: b(key), StartRevision: rev + 1}, 1); err != nil {
			mu.Lock()
			errs = append(errs, fmt.Sprintf("%s: %v", tg.name, err))
			mu.Unlock()
		}
	})
	if len(errs) > 0 {
		t.Fatalf("waiting for lease expiry: %v", errs)
	}
}
