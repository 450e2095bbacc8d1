package etcdserver

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// clusterServer is the Cluster service of a one-member cluster.
type clusterServer struct {
	pb.UnimplementedClusterServer
	s *Server
}

// clusterHeader is etcd's cluster service header: no revision.
func (c *clusterServer) clusterHeader() *pb.ResponseHeader { return c.s.header(0) }

func (c *clusterServer) MemberList(context.Context, *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	return &pb.MemberListResponse{
		Header: c.clusterHeader(),
		Members: []*pb.Member{{
			ID:         c.s.memberID,
			Name:       c.s.cfg.Name,
			ClientURLs: c.s.advertiseURLs(),
		}},
	}, nil
}

func (c *clusterServer) MemberAdd(context.Context, *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	return nil, errMembershipUnsupported
}

func (c *clusterServer) MemberRemove(context.Context, *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	return nil, errMembershipUnsupported
}

func (c *clusterServer) MemberUpdate(context.Context, *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return nil, errMembershipUnsupported
}

func (c *clusterServer) MemberPromote(context.Context, *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return nil, errMembershipUnsupported
}
