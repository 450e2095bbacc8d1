package etcdserver

import (
	"context"
	"runtime/debug"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// checkClientVersion refuses a client API version that is not UTF-8, as
// etcd's interceptors do.
func checkClientVersion(ctx context.Context) error {
	// ValueFromIncomingContext reads one key without copying all metadata,
	// which matters at one call per request.
	if vs := metadata.ValueFromIncomingContext(ctx, rpctypes.MetadataClientAPIVersionKey); len(vs) > 0 && !utf8.ValidString(vs[0]) {
		return rpctypes.ErrGRPCInvalidClientAPIVersion
	}
	return nil
}

// recoverPanic turns a panic in a handler into an Internal error: a request
// must never take the server down.
func (s *Server) recoverPanic(method string, err *error) {
	if p := recover(); p != nil {
		s.log.Error("panic in gRPC handler", "method", method, "panic", p, "stack", string(debug.Stack()))
		*err = status.Errorf(codes.Internal, "herd store: internal error in %s", method)
	}
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer s.recoverPanic(info.FullMethod, &err)
	if err := checkClientVersion(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer s.recoverPanic(info.FullMethod, &err)
	if err := checkClientVersion(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}
