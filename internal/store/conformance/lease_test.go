package conformance

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

func grantCall(desc string, r *pb.LeaseGrantRequest) call {
	return call{desc: named("LeaseGrant", desc), req: r, do: func(ctx context.Context, tg *target) (proto.Message, error) {
		return tg.lease.LeaseGrant(ctx, r)
	}}
}

// leaseID returns the lease ID a target stored under name, or id itself if
// name is empty; server-assigned IDs differ between the two systems.
func leaseID(tg *target, name string, id int64) int64 {
	if name != "" {
		return tg.get(name)
	}
	return id
}

// ttlTolerance is how far the remaining TTLs reported by the two systems may
// be apart: they are read at slightly different times, and etcd rounds.
const ttlTolerance = 1

// reconcileTTL accepts LeaseTimeToLive responses whose remaining TTLs are
// within ttlTolerance and compares their keys as a set (etcd lists them in
// map order).
func reconcileTTL() func(ref, sut proto.Message) error {
	return func(ref, sut proto.Message) error {
		r, s := ref.(*pb.LeaseTimeToLiveResponse), sut.(*pb.LeaseTimeToLiveResponse)
		if d := r.TTL - s.TTL; d < -ttlTolerance || d > ttlTolerance {
			return fmt.Errorf("remaining TTL: etcd %d, sut %d (tolerance %d)", r.TTL, s.TTL, ttlTolerance)
		}
		s.TTL = r.TTL
		for _, m := range []*pb.LeaseTimeToLiveResponse{r, s} {
			sort.Slice(m.Keys, func(i, j int) bool { return bytes.Compare(m.Keys[i], m.Keys[j]) < 0 })
		}
		return nil
	}
}

func ttlCall(desc, name string, id int64, keys bool) call {
	return call{
		desc: fmt.Sprintf("%s (keys=%v)", named("LeaseTimeToLive", desc), keys),
		req:  &pb.LeaseTimeToLiveRequest{ID: id, Keys: keys},
		do: func(ctx context.Context, tg *target) (proto.Message, error) {
			return tg.lease.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: leaseID(tg, name, id), Keys: keys})
		},
		reconcile: reconcileTTL(),
	}
}

func revokeCall(desc, name string, id int64) call {
	return call{
		desc: named("LeaseRevoke", desc),
		req:  &pb.LeaseRevokeRequest{ID: id},
		do: func(ctx context.Context, tg *target) (proto.Message, error) {
			return tg.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: leaseID(tg, name, id)})
		},
	}
}

// leasesCall lists leases; sorted compares them as a set (ordered by ID),
// otherwise the order is compared too.
func leasesCall(desc string, sorted bool) call {
	return call{
		desc: named("LeaseLeases", desc),
		do: func(ctx context.Context, tg *target) (proto.Message, error) {
			return tg.lease.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
		},
		reconcile: func(ref, sut proto.Message) error {
			if sorted {
				for _, m := range []*pb.LeaseLeasesResponse{ref.(*pb.LeaseLeasesResponse), sut.(*pb.LeaseLeasesResponse)} {
					sort.Slice(m.Leases, func(i, j int) bool { return m.Leases[i].ID < m.Leases[j].ID })
				}
			}
			return nil
		},
	}
}

func TestLease(t *testing.T) {
	// Default raft timing: the minimum TTL is derived from it.
	p := newPair(t, serverOpts{})
	grants := []struct {
		name string
		req  *pb.LeaseGrantRequest
	}{
		{"client ID", &pb.LeaseGrantRequest{ID: 1, TTL: 60}},
		{"existing ID", &pb.LeaseGrantRequest{ID: 1, TTL: 60}},
		{"TTL 1 (below minimum)", &pb.LeaseGrantRequest{ID: 2, TTL: 1}},
		{"TTL 2", &pb.LeaseGrantRequest{ID: 3, TTL: 2}},
		{"TTL 0", &pb.LeaseGrantRequest{ID: 4, TTL: 0}},
		{"negative TTL", &pb.LeaseGrantRequest{ID: 5, TTL: -10}},
		{"maximum TTL", &pb.LeaseGrantRequest{ID: 6, TTL: 9_000_000_000}},
		{"TTL too large", &pb.LeaseGrantRequest{ID: 7, TTL: 9_000_000_001}},
		{"TTL too large without ID", &pb.LeaseGrantRequest{TTL: 1 << 40}},
		{"negative ID", &pb.LeaseGrantRequest{ID: -8, TTL: 60}},
		{"large ID", &pb.LeaseGrantRequest{ID: 1<<62 + 9, TTL: 60}},
	}
	for _, g := range grants {
		t.Run("grant "+g.name, func(t *testing.T) {
			p.run(t, grantCall(g.name, g.req))
		})
	}
	t.Run("grant server ID", func(t *testing.T) {
		p.grantServerID(t, "server", 120, false)
	})

	// Attach keys, in different revisions, to lease 1 and the server lease.
	for i, k := range []string{"k3", "k1", "k2"} {
		p.run(t, putCall("with lease 1", &pb.PutRequest{Key: b(k), Value: b(fmt.Sprint(i)), Lease: 1}))
	}
	p.run(t, txnCall("two keys with lease 1", &pb.TxnRequest{Success: []*pb.RequestOp{
		opPutReq(&pb.PutRequest{Key: b("k0"), Lease: 1}), opPutReq(&pb.PutRequest{Key: b("k4"), Lease: 1})}}))
	p.run(t, call{desc: "Put with server lease", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		return tg.kv.Put(ctx, &pb.PutRequest{Key: b("s1"), Value: b("x"), Lease: tg.get("server")})
	}})
	p.put(t, "plain", "x")
	p.run(t, putCall("move k4 to lease 3", &pb.PutRequest{Key: b("k4"), Value: b("moved"), Lease: 3}))

	t.Run("time to live", func(t *testing.T) {
		p.run(t, ttlCall("lease 1", "", 1, false))
		p.run(t, ttlCall("lease 1", "", 1, true))
		p.run(t, ttlCall("lease 2 (minimum TTL)", "", 2, true))
		p.run(t, ttlCall("lease 6 (maximum TTL)", "", 6, false))
		p.run(t, ttlCall("server lease", "server", 0, true))
		p.run(t, ttlCall("unknown lease", "", 404, true))
		p.run(t, ttlCall("lease 0", "", 0, false))
	})
	t.Run("leases", func(t *testing.T) {
		p.run(t, leasesCall("all (as a set)", true))
	})
	t.Run("keepalive", func(t *testing.T) {
		for _, id := range []int64{1, 404, 2} {
			p.run(t, keepAliveCall(fmt.Sprintf("lease %d", id), "", id))
		}
		p.run(t, keepAliveCall("server lease", "server", 0))
		p.run(t, ttlCall("lease 1 after keepalive", "", 1, false))
	})
	t.Run("revoke", func(t *testing.T) {
		before := p.rev(t)
		p.run(t, revokeCall("lease 1 with 4 keys", "", 1))
		p.run(t, revokeCall("lease 1 again", "", 1))
		p.run(t, revokeCall("unknown lease", "", 404))
		p.run(t, revokeCall("lease 0", "", 0))
		p.run(t, revokeCall("lease 4 without keys (no new revision)", "", 4))
		p.run(t, revokeCall("server lease", "server", 0))
		after := p.rev(t)
		if after != before+2 {
			t.Errorf("reference: two revokes with keys moved the revision from %d to %d", before, after)
		}
		for rev := before; rev <= after; rev++ {
			p.run(t, rangeCall(fmt.Sprintf("history at %d", rev), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}))
		}
		p.run(t, ttlCall("revoked lease", "", 1, true))
		p.run(t, keepAliveCall("revoked lease", "", 1))
		p.run(t, putCall("with revoked lease", &pb.PutRequest{Key: b("k1"), Lease: 1}))
		p.run(t, leasesCall("after revoke (as a set)", true))
	})
	t.Run("watch sees revoke as one revision", func(t *testing.T) {
		start := p.rev(t)
		for _, k := range []string{"r2", "r1"} {
			p.run(t, putCall("with lease 3", &pb.PutRequest{Key: b(k), Lease: 3}))
		}
		p.run(t, revokeCall("lease 3", "", 3))
		p.compareWatch(t, "revoke events", &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: start + 1, PrevKv: true})
	})
}

// TestLeaseOrder checks the order of LeaseLeases: etcd lists leases by
// expiry, soonest first.
func TestLeaseOrder(t *testing.T) {
	p := newPair(t, serverOpts{})
	for _, g := range []struct{ id, ttl int64 }{{10, 300}, {20, 100}, {30, 200}, {5, 400}} {
		p.run(t, grantCall(fmt.Sprintf("lease %d ttl %d", g.id, g.ttl), &pb.LeaseGrantRequest{ID: g.id, TTL: g.ttl}))
	}
	p.run(t, leasesCall("in etcd's order (by expiry)", false))
}

// grantServerID grants a lease with a server-assigned ID on both systems,
// stores each ID under name in its target, and records the alias.
func (p *pair) grantServerID(t testing.TB, name string, ttl int64, viaClientv3 bool) {
	t.Helper()
	p.run(t, call{
		desc: fmt.Sprintf("LeaseGrant server-assigned ID, TTL %d (clientv3: %v)", ttl, viaClientv3),
		req:  &pb.LeaseGrantRequest{TTL: ttl},
		do: func(ctx context.Context, tg *target) (proto.Message, error) {
			if viaClientv3 {
				resp, err := tg.cli.Grant(ctx, ttl)
				if err != nil {
					return nil, err
				}
				tg.set(name, int64(resp.ID))
				return &pb.LeaseGrantResponse{Header: resp.ResponseHeader, ID: int64(resp.ID), TTL: resp.TTL, Error: resp.Error}, nil
			}
			resp, err := tg.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: ttl})
			if err == nil {
				tg.set(name, resp.ID)
			}
			return resp, err
		},
		reconcile: func(ref, sut proto.Message) error {
			r, s := ref.(*pb.LeaseGrantResponse), sut.(*pb.LeaseGrantResponse)
			if r.ID <= 0 || s.ID <= 0 {
				return fmt.Errorf("server-assigned lease IDs must be positive: etcd %d, sut %d", r.ID, s.ID)
			}
			s.ID = r.ID
			return nil
		},
	})
	p.alias(p.sut.get(name), p.ref.get(name))
}

func keepAliveCall(desc, name string, id int64) call {
	return call{
		desc: named("LeaseKeepAlive", desc),
		req:  &pb.LeaseKeepAliveRequest{ID: id},
		do: func(ctx context.Context, tg *target) (proto.Message, error) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			s, err := tg.lease.LeaseKeepAlive(ctx)
			if err != nil {
				return nil, err
			}
			if err := s.Send(&pb.LeaseKeepAliveRequest{ID: leaseID(tg, name, id)}); err != nil {
				return nil, err
			}
			resp, err := s.Recv()
			if err != nil {
				return nil, err
			}
			s.CloseSend()
			return resp, nil
		},
	}
}

// TestLeaseClientv3 drives leases the way kube-apiserver does: Grant,
// Put with lease, KeepAliveOnce, TimeToLive, Leases, Revoke.
func TestLeaseClientv3(t *testing.T) {
	p := newPair(t, serverOpts{})
	p.grantServerID(t, "l", 30, true)
	p.run(t, call{desc: "clientv3 Put with lease", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := tg.cli.Put(ctx, "/registry/events/e1", "v", clientv3.WithLease(clientv3.LeaseID(tg.get("l"))))
		if err != nil {
			return nil, err
		}
		return (*pb.PutResponse)(resp), nil
	}})
	p.run(t, call{desc: "clientv3 KeepAliveOnce", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := tg.cli.KeepAliveOnce(ctx, clientv3.LeaseID(tg.get("l")))
		if err != nil {
			return nil, err
		}
		return &pb.LeaseKeepAliveResponse{Header: resp.ResponseHeader, TTL: resp.TTL}, nil
	}})
	p.run(t, call{desc: "clientv3 KeepAliveOnce unknown lease", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := tg.cli.KeepAliveOnce(ctx, 4040)
		if err != nil {
			return nil, err
		}
		return &pb.LeaseKeepAliveResponse{Header: resp.ResponseHeader, TTL: resp.TTL}, nil
	}})
	p.run(t, call{
		desc: "clientv3 TimeToLive with keys",
		do: func(ctx context.Context, tg *target) (proto.Message, error) {
			resp, err := tg.cli.TimeToLive(ctx, clientv3.LeaseID(tg.get("l")), clientv3.WithAttachedKeys())
			if err != nil {
				return nil, err
			}
			return &pb.LeaseTimeToLiveResponse{Header: resp.ResponseHeader, ID: int64(resp.ID), TTL: resp.TTL, GrantedTTL: resp.GrantedTTL, Keys: resp.Keys}, nil
		},
		reconcile: reconcileTTL(),
	})
	p.run(t, call{desc: "clientv3 Leases", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := tg.cli.Leases(ctx)
		if err != nil {
			return nil, err
		}
		if len(resp.Leases) != 1 || int64(resp.Leases[0].ID) != tg.get("l") {
			return nil, fmt.Errorf("leases %v, want just %d", resp.Leases, tg.get("l"))
		}
		return resp.ResponseHeader, nil
	}})
	p.run(t, call{desc: "clientv3 Revoke", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := tg.cli.Revoke(ctx, clientv3.LeaseID(tg.get("l")))
		if err != nil {
			return nil, err
		}
		return (*pb.LeaseRevokeResponse)(resp), nil
	}})
	p.run(t, call{desc: "clientv3 Revoke unknown", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := tg.cli.Revoke(ctx, 4040)
		if err != nil {
			return nil, err
		}
		return (*pb.LeaseRevokeResponse)(resp), nil
	}})
}

// TestLeaseExpiry lets a lease with two keys expire and checks both systems
// delete the keys in one revision.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	p := newPair(t, serverOpts{})
	p.run(t, grantCall("lease 7 TTL 1 (minimum 2)", &pb.LeaseGrantRequest{ID: 7, TTL: 1}))
	p.run(t, putCall("e1 with lease", &pb.PutRequest{Key: b("e1"), Lease: 7}))
	p.run(t, putCall("e2 with lease", &pb.PutRequest{Key: b("e2"), Lease: 7}))
	start := p.rev(t)

	// Wait on each side for the delete events, with a deadline.
	var (
		mu   sync.Mutex
		evs  = map[*target][]*mvccpb.Event{}
		errs []string
	)
	p.both(func(tg *target) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		got, err := collectEvents(ctx, tg, &pb.WatchCreateRequest{Key: b("e"), RangeEnd: b("f"), StartRevision: start + 1}, 2)
		mu.Lock()
		defer mu.Unlock()
		evs[tg] = got
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", tg.name, err))
		}
	})
	if len(errs) > 0 {
		t.Fatalf("waiting for expiry: %v", errs)
	}
	if d := protoDiff(&pb.WatchResponse{Events: evs[p.ref]}, &pb.WatchResponse{Events: evs[p.sut]}); d != "" {
		t.Errorf("DIFFERENCE in events of lease expiry (-%s +%s):\n%s", p.ref.name, p.sut.name, d)
	}
	if !slices.ContainsFunc(evs[p.ref], func(e *mvccpb.Event) bool { return e.Type == mvccpb.DELETE }) {
		t.Errorf("reference sent no delete events: %v", evs[p.ref])
	}
	p.run(t, ttlCall("expired lease", "", 7, true))
	p.run(t, keepAliveCall("expired lease", "", 7))
	p.run(t, revokeCall("expired lease", "", 7))
	p.run(t, rangeCall("after expiry", &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}))
}
