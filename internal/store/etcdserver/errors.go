package etcdserver

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herd-project/herd/internal/store/lease"
	"github.com/herd-project/herd/internal/store/mvcc"
)

// errMembershipUnsupported answers every membership change.
var errMembershipUnsupported = status.Error(codes.FailedPrecondition,
	"herd store: cluster membership changes are not supported on a single node yet")

// toGRPCError maps an error of the engine or the lessor to the gRPC error
// etcd returns for it. Errors that already are gRPC errors pass unchanged, and
// so do context errors, which gRPC converts itself (as etcd lets it).
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, mvcc.ErrCompacted):
		return rpctypes.ErrGRPCCompacted
	case errors.Is(err, mvcc.ErrFutureRev):
		return rpctypes.ErrGRPCFutureRev
	case errors.Is(err, mvcc.ErrLeaseNotFound), errors.Is(err, lease.ErrLeaseNotFound):
		return rpctypes.ErrGRPCLeaseNotFound
	case errors.Is(err, mvcc.ErrLeaseExists), errors.Is(err, lease.ErrLeaseExists):
		return rpctypes.ErrGRPCLeaseExist
	case errors.Is(err, lease.ErrLeaseTTLTooLarge):
		return rpctypes.ErrGRPCLeaseTTLTooLarge
	case errors.Is(err, mvcc.ErrClosed):
		return rpctypes.ErrGRPCStopped
	}
	return status.Error(codes.Unknown, err.Error())
}
