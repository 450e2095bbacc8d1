package etcdserver

import (
	"context"
	"crypto/sha256"
	"hash"
	"io"
	"sort"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/api/v3/version"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herd-project/herd/internal/store/mvcc"
)

// storageVersion is the storage version an etcd of our API version reports
// in Status once its cluster version is set: major.minor.0.
var storageVersion = version.APIVersion + ".0"

// snapshotVersion is the version in Snapshot messages: etcd sends the storage
// version recorded in the database it streams, which every etcd of our API
// version records shortly after it starts. herd sends what its Status reports.
var snapshotVersion = storageVersion

// snapshotChunkSize is etcd's snapshot send buffer.
const snapshotChunkSize = 32 * 1024

// maintenanceServer is the Maintenance service.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

func (m *maintenanceServer) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	s := m.s
	size, inUse := s.store.DBSize()
	index := s.raftIndex.Load()
	resp := &pb.StatusResponse{
		Header:           s.currentHeader(),
		Version:          version.Version,
		DbSize:           size,
		Leader:           s.memberID,
		RaftIndex:        index,
		RaftTerm:         1,
		RaftAppliedIndex: index,
		DbSizeInUse:      inUse,
		IsLearner:        false,
		StorageVersion:   storageVersion,
		DbSizeQuota:      defaultQuotaBytes,
		DowngradeInfo:    &pb.DowngradeInfo{Enabled: false},
	}
	for _, a := range s.alarms.get(pb.AlarmType_NONE) {
		resp.Errors = append(resp.Errors, a.String())
	}
	return resp, nil
}

func (m *maintenanceServer) Hash(context.Context, *pb.HashRequest) (*pb.HashResponse, error) {
	h, err := m.s.store.Hash()
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.HashResponse{Header: m.s.currentHeader(), Hash: h}, nil
}

// HashKV answers at a compaction revision with the hash taken just before
// that compaction, as etcd does.
func (m *maintenanceServer) HashKV(_ context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	h, ok := m.s.compactHashes.get(r.Revision)
	if !ok {
		var err error
		if h, err = m.s.store.HashKV(r.Revision); err != nil {
			return nil, toGRPCError(err)
		}
		if h.CompactRevision == 0 {
			// etcd's compacted revision starts at -1.
			h.CompactRevision = m.s.firstRev()
		}
	}
	return &pb.HashKVResponse{
		Header:          m.s.currentHeader(),
		Hash:            h.Hash,
		CompactRevision: h.CompactRevision,
		HashRevision:    h.HashRevision,
	}, nil
}

// Defragment answers without a header, as etcd does.
func (m *maintenanceServer) Defragment(context.Context, *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	m.s.log.Info("starting defragment")
	if err := m.s.store.Defrag(); err != nil {
		m.s.log.Warn("failed to defragment", "error", err)
		return nil, toGRPCError(err)
	}
	m.s.log.Info("finished defragment")
	return &pb.DefragmentResponse{}, nil
}

// Snapshot streams a consistent copy of the database in 32 KiB chunks that
// count down the remaining bytes, then its sha256 in a last message, which
// is how etcdctl and etcdutl check it.
func (m *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	w := &snapshotSender{stream: stream, hash: sha256.New()}
	total, err := m.s.store.Snapshot(func(size int64) io.Writer {
		w.remaining = size
		m.s.log.Info("sending database snapshot to client", "total_bytes", size)
		return w
	})
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		return toGRPCError(err)
	}
	if err := stream.Send(&pb.SnapshotResponse{Blob: w.hash.Sum(nil), Version: snapshotVersion}); err != nil {
		return toGRPCError(err)
	}
	m.s.log.Info("sent database snapshot to client", "total_bytes", total)
	return nil
}

// snapshotSender cuts the database copy into Snapshot messages.
type snapshotSender struct {
	stream    pb.Maintenance_SnapshotServer
	hash      hash.Hash
	buf       []byte
	remaining int64
}

func (w *snapshotSender) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			// Send does not copy: every chunk needs its own buffer.
			w.buf = make([]byte, 0, snapshotChunkSize)
		}
		c := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+c]
		p = p[c:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *snapshotSender) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.hash.Write(w.buf)
	w.remaining -= int64(len(w.buf))
	if w.remaining < 0 {
		return status.Error(codes.Internal, "herd store: snapshot longer than its size")
	}
	resp := &pb.SnapshotResponse{RemainingBytes: uint64(w.remaining), Blob: w.buf, Version: snapshotVersion}
	w.buf = nil
	return w.stream.Send(resp)
}

// Alarm manages the alarms as etcd's applier does.
func (m *maintenanceServer) Alarm(_ context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	s := m.s
	if err := s.propose(&pb.InternalRaftRequest{Alarm: r}); err != nil {
		return nil, err
	}
	resp := &pb.AlarmResponse{}
	switch r.Action {
	case pb.AlarmRequest_GET:
		resp.Alarms = s.alarms.get(r.Alarm)
	case pb.AlarmRequest_ACTIVATE:
		if r.Alarm != pb.AlarmType_NONE {
			a, err := s.alarms.activate(r.MemberID, r.Alarm)
			if err != nil {
				return nil, toGRPCError(err)
			}
			resp.Alarms = append(resp.Alarms, a)
		}
	case pb.AlarmRequest_DEACTIVATE:
		a, err := s.alarms.deactivate(r.MemberID, r.Alarm)
		if err != nil {
			return nil, toGRPCError(err)
		}
		if a != nil {
			resp.Alarms = append(resp.Alarms, a)
		}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "herd store: unknown alarm action %d", r.Action)
	}
	resp.Header = s.currentHeader()
	return resp, nil
}

// MoveLeader succeeds only toward this member, the leader already; any other
// member does not exist.
func (m *maintenanceServer) MoveLeader(_ context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if r.TargetID != m.s.memberID {
		return nil, rpctypes.ErrGRPCBadLeaderTransferee
	}
	return &pb.MoveLeaderResponse{}, nil
}

func (m *maintenanceServer) Downgrade(context.Context, *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return nil, status.Error(codes.Unimplemented, "herd store: cluster downgrade is not supported")
}

// maxCompactHashes is how many compaction hashes etcd keeps.
const maxCompactHashes = 10

// hashHistory keeps the latest compaction hashes by revision.
type hashHistory struct {
	mu     sync.Mutex
	hashes []mvcc.HashKVResult
}

func (h *hashHistory) add(r mvcc.HashKVResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hashes = append(h.hashes, r)
	sort.Slice(h.hashes, func(i, j int) bool { return h.hashes[i].HashRevision < h.hashes[j].HashRevision })
	if n := len(h.hashes); n > maxCompactHashes {
		h.hashes = h.hashes[n-maxCompactHashes:]
	}
}

func (h *hashHistory) get(rev int64) (mvcc.HashKVResult, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.hashes {
		if r.HashRevision == rev {
			return r, true
		}
	}
	return mvcc.HashKVResult{}, false
}
