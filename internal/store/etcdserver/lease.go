package etcdserver

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/herd-project/herd/internal/store/lease"
)

// leaseServer is the Lease service.
type leaseServer struct {
	pb.UnimplementedLeaseServer
	s *Server
}

func (l *leaseServer) LeaseGrant(_ context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	s := l.s
	if err := s.checkQuota(r); err != nil {
		return nil, err
	}
	if err := s.propose(&pb.InternalRaftRequest{LeaseGrant: r}); err != nil {
		return nil, err
	}
	if err := s.alarmGate(applyLeaseGrant, quotaLeaseCost); err != nil {
		return nil, err
	}
	id, ttl, err := s.lessor.Grant(r.ID, r.TTL)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.LeaseGrantResponse{Header: s.currentHeader(), ID: id, TTL: ttl}, nil
}

func (l *leaseServer) LeaseRevoke(_ context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	s := l.s
	if err := s.propose(&pb.InternalRaftRequest{LeaseRevoke: r}); err != nil {
		return nil, err
	}
	if err := s.alarmGate(applyLeaseRevoke, 0); err != nil {
		return nil, err
	}
	if err := s.lessor.Revoke(r.ID); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.LeaseRevokeResponse{Header: s.currentHeader()}, nil
}

// LeaseTimeToLive answers TTL -1 for an unknown lease, as etcd does.
func (l *leaseServer) LeaseTimeToLive(_ context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	s := l.s
	st, err := s.lessor.TimeToLive(r.ID, r.Keys)
	if errors.Is(err, lease.ErrLeaseNotFound) {
		return &pb.LeaseTimeToLiveResponse{Header: s.currentHeader(), ID: r.ID, TTL: -1}, nil
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp := &pb.LeaseTimeToLiveResponse{Header: s.currentHeader(), ID: r.ID, TTL: st.TTL, GrantedTTL: st.GrantedTTL}
	if r.Keys {
		resp.Keys = make([][]byte, len(st.Keys))
		for i, k := range st.Keys {
			resp.Keys[i] = []byte(k)
		}
	}
	return resp, nil
}

func (l *leaseServer) LeaseLeases(context.Context, *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	ids := l.s.lessor.Leases()
	leases := make([]*pb.LeaseStatus, len(ids))
	for i, id := range ids {
		leases[i] = &pb.LeaseStatus{ID: id}
	}
	return &pb.LeaseLeasesResponse{Header: l.s.currentHeader(), Leases: leases}, nil
}

// LeaseKeepAlive renews leases until the client closes the stream. An
// unknown or expired lease gets TTL 0, as in etcd.
func (l *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	errc := make(chan error, 1)
	go func() { errc <- l.keepAlive(stream) }()
	select {
	case err := <-errc:
		return err
	case <-stream.Context().Done():
		return stream.Context().Err()
	case <-l.s.stopc:
		return rpctypes.ErrGRPCStopped
	}
}

func (l *leaseServer) keepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// The header is taken before the renewal, so that its revision is
		// not later than the renewal (etcd does the same).
		resp := &pb.LeaseKeepAliveResponse{ID: req.ID, Header: l.s.currentHeader()}
		ttl, err := l.s.lessor.Renew(req.ID)
		switch {
		case errors.Is(err, lease.ErrLeaseNotFound):
			ttl = 0
		case err != nil:
			return toGRPCError(err)
		}
		resp.TTL = ttl
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
