package etcdserver

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// authServer answers as an etcd with authentication disabled, so that
// clients probing it (etcdctl auth status, a client configured with a user)
// get etcd's answers. Managing users and roles is not supported: those calls
// are Unimplemented.
type authServer struct {
	pb.UnimplementedAuthServer
	s *Server
}

// AuthStatus reports authentication as disabled, at etcd's initial auth
// revision.
func (a *authServer) AuthStatus(context.Context, *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	return &pb.AuthStatusResponse{Header: a.s.currentHeader(), Enabled: false, AuthRevision: 1}, nil
}

// Authenticate fails as it does on an etcd without authentication.
func (a *authServer) Authenticate(context.Context, *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	return nil, rpctypes.ErrGRPCAuthNotEnabled
}

// AuthDisable is a no-op: authentication is already disabled.
func (a *authServer) AuthDisable(context.Context, *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	return &pb.AuthDisableResponse{Header: a.s.currentHeader()}, nil
}
