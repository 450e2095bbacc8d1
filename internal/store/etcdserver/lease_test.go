package etcdserver

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/herd-project/herd/internal/store/lease"
)

func TestLeaseService(t *testing.T) {
	s := startServer(t, testConfig(t))
	conn := newClient(t, s).ActiveConnection()
	ls, kv := pb.NewLeaseClient(conn), pb.NewKVClient(conn)
	ctx := testCtx(t)

	g, err := ls.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 7, TTL: 1})
	wantStatus(t, "grant", err, nil)
	if g.ID != 7 || g.TTL != lease.DefaultMinTTL || g.Header.Revision != 1 {
		t.Fatalf("grant = %v, want TTL raised to the minimum", g)
	}
	_, err = ls.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 7, TTL: 10})
	wantStatus(t, "grant taken ID", err, rpctypes.ErrGRPCLeaseExist)
	_, err = ls.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: lease.MaxLeaseTTL + 1})
	wantStatus(t, "grant huge TTL", err, rpctypes.ErrGRPCLeaseTTLTooLarge)
	g2, err := ls.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 100})
	wantStatus(t, "grant server ID", err, nil)
	if g2.ID <= 0 || g2.TTL != 100 {
		t.Fatalf("grant = %v", g2)
	}

	for _, k := range []string{"b", "a"} {
		if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte(k), Lease: g2.ID}); err != nil {
			t.Fatal(err)
		}
	}
	ttl, err := ls.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: g2.ID, Keys: true})
	wantStatus(t, "ttl", err, nil)
	if ttl.ID != g2.ID || ttl.GrantedTTL != 100 || ttl.TTL < 98 || len(ttl.Keys) != 2 || string(ttl.Keys[0]) != "a" || ttl.Header.Revision != 3 {
		t.Fatalf("ttl = %v", ttl)
	}
	ttl, err = ls.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 12345, Keys: true})
	wantStatus(t, "ttl unknown", err, nil)
	if ttl.ID != 12345 || ttl.TTL != -1 || ttl.GrantedTTL != 0 || ttl.Keys != nil || ttl.Header.Revision != 3 {
		t.Fatalf("ttl of unknown lease = %v", ttl)
	}

	leases, err := ls.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
	wantStatus(t, "leases", err, nil)
	if len(leases.Leases) != 2 || leases.Leases[0].ID != 7 || leases.Leases[1].ID != g2.ID {
		t.Fatalf("leases = %v, want by expiry", leases)
	}

	stream, err := ls.LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ id, ttl int64 }{{g2.ID, 100}, {999, 0}, {7, lease.DefaultMinTTL}} {
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: tt.id}); err != nil {
			t.Fatal(err)
		}
		ka, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ka.ID != tt.id || ka.TTL != tt.ttl || ka.Header.Revision != 3 {
			t.Fatalf("keepalive = %v, want TTL %d", ka, tt.ttl)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}

	rv, err := ls.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: g2.ID})
	wantStatus(t, "revoke", err, nil)
	if rv.Header.Revision != 4 {
		t.Fatalf("revoke header = %v, want the keys deleted in one revision", rv.Header)
	}
	got, _ := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00")})
	if got.Count != 0 {
		t.Fatalf("keys of a revoked lease remain: %v", got)
	}
	_, err = ls.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: g2.ID})
	wantStatus(t, "revoke twice", err, rpctypes.ErrGRPCLeaseNotFound)
	rv, err = ls.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 7})
	wantStatus(t, "revoke without keys", err, nil)
	if rv.Header.Revision != 4 {
		t.Fatalf("revoking a lease without keys moved the revision: %v", rv.Header)
	}
	_, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), Lease: 7})
	wantStatus(t, "put with revoked lease", err, rpctypes.ErrGRPCLeaseNotFound)
}

func TestLeaseExpiry(t *testing.T) {
	clock := clockwork.NewFakeClock()
	cfg := testConfig(t)
	cfg.Clock = clock
	s := startServer(t, cfg)
	conn := newClient(t, s).ActiveConnection()
	ls, kv := pb.NewLeaseClient(conn), pb.NewKVClient(conn)
	ctx := testCtx(t)

	// A long lease keeps the expiry timer armed, so that a fake-clock waiter
	// count of one means the expiry loop is idle.
	if _, err := ls.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 1, TTL: 3600}); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 2, TTL: 5}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"x", "y"} {
		if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte(k), Lease: 2}); err != nil {
			t.Fatal(err)
		}
	}
	waitIdle := func() {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := clock.BlockUntilContext(wctx, 1); err != nil {
			t.Fatalf("expiry loop not idle: %v", err)
		}
	}
	waitIdle()
	clock.Advance(4 * time.Second)
	waitIdle()
	if got, _ := kv.Range(ctx, &pb.RangeRequest{Key: []byte("x")}); got.Count != 1 {
		t.Fatal("lease expired early")
	}
	clock.Advance(time.Second)
	// Expiry deletes the keys in one revision (4); wait for it.
	for {
		got, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("x"), RangeEnd: []byte("z")})
		if err != nil {
			t.Fatal(err)
		}
		if got.Count == 0 {
			if got.Header.Revision != 4 {
				t.Fatalf("revision after expiry = %d, want 4", got.Header.Revision)
			}
			break
		}
		waitIdle()
	}
	ttl, err := ls.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 2})
	if err != nil || ttl.TTL != -1 {
		t.Fatalf("ttl of expired lease = %v, %v", ttl, err)
	}
}
