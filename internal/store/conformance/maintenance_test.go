package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// TestStatus compares what Status means rather than its values: the
// revision, and that a single member is its own leader. Raft index and term,
// database sizes and the version string differ legitimately.
func TestStatus(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	seedHistory(t, p)
	var sizes [2]string
	p.run(t, statusCall(p, &sizes))
	t.Logf("%s: %s", p.ref.name, sizes[0])
	t.Logf("%s: %s", p.sut.name, sizes[1])
}

// statusCall calls Status and keeps its comparable meaning; the other
// values go into sizes (ref, sut) if set.
func statusCall(p *pair, sizes *[2]string) call {
	return call{
		desc: "Status (semantics)",
		do: func(ctx context.Context, tg *target) (proto.Message, error) {
			resp, err := tg.maint.Status(ctx, &pb.StatusRequest{})
			if err != nil {
				return nil, err
			}
			if sizes != nil {
				i := 0
				if tg == p.sut {
					i = 1
				}
				sizes[i] = fmt.Sprintf("dbSize=%d dbSizeInUse=%d version=%q raftIndex=%d raftTerm=%d raftAppliedIndex=%d storageVersion=%q",
					resp.DbSize, resp.DbSizeInUse, resp.Version, resp.RaftIndex, resp.RaftTerm, resp.RaftAppliedIndex, resp.StorageVersion)
			}
			// Keep the comparable meaning only.
			sem := &pb.StatusResponse{
				Header:    resp.Header,
				IsLearner: resp.IsLearner,
				Errors:    resp.Errors,
			}
			if resp.Header != nil {
				own := fmt.Sprint(resp.Header.MemberId)
				for i, e := range sem.Errors {
					sem.Errors[i] = strings.ReplaceAll(e, own, "<own member ID>")
				}
			}
			if resp.Header != nil && resp.Leader == resp.Header.MemberId && resp.Leader != 0 {
				sem.Leader = 1 // "leader is this member"
			}
			if resp.DbSize > 0 && resp.DbSizeInUse > 0 && resp.DbSizeInUse <= resp.DbSize {
				sem.DbSize = 1 // "sizes are plausible"
			}
			if resp.Version != "" {
				sem.Version = "set"
			}
			return sem, nil
		},
	}
}

// TestHash compares HashKV in full, hash included: herd's engine stores
// revisions like etcd's, so the same history must hash the same. Hash (of
// the whole database file) is not compared, only that it succeeds.
func TestHash(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	hashKV := func(rev int64) call {
		return call{desc: fmt.Sprintf("HashKV at %d", rev), req: &pb.HashKVRequest{Revision: rev}, do: func(ctx context.Context, tg *target) (proto.Message, error) {
			return tg.maint.HashKV(ctx, &pb.HashKVRequest{Revision: rev})
		}}
	}
	p.run(t, hashKV(0))
	seedHistory(t, p)
	p.run(t, grantCall("lease 5", &pb.LeaseGrantRequest{ID: 5, TTL: 3600}))
	p.run(t, putCall("with lease", &pb.PutRequest{Key: b("l"), Value: b("v"), Lease: 5}))
	for rev := int64(0); rev <= 11; rev++ {
		p.run(t, hashKV(rev))
	}
	p.run(t, compactCall("at 6", &pb.CompactionRequest{Revision: 6, Physical: true}))
	for _, rev := range []int64{0, 5, 6, 7, 10} {
		p.run(t, hashKV(rev))
	}
	p.run(t, call{desc: "Hash (header only; the database hash is implementation-specific)", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := tg.maint.Hash(ctx, &pb.HashRequest{})
		if err != nil {
			return nil, err
		}
		return &pb.HashResponse{Header: resp.Header}, nil
	}})
}

// snapshotShape is what is compared of a Snapshot stream: its framing, not
// its bytes (the database layouts differ).
type snapshotShape struct {
	// Err is the stream's error, if any.
	Err string
	// ChecksumTrailer: the last message is the SHA-256 of all earlier blobs.
	ChecksumTrailer bool
	// RemainingConsistent: each data message's remaining_bytes is the total
	// minus what was sent so far, ending at 0.
	RemainingConsistent bool
	// HeaderSet: any message carries a response header.
	HeaderSet bool
	// Bolt: the data opens as a bbolt database.
	Bolt bool
	// Version is the storage version reported in the messages.
	Version string
}

func TestSnapshot(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	seedHistory(t, p)
	// A freshly started etcd records its storage version in its database a
	// moment after it starts (after Status already reports it), and only
	// then puts it in snapshots; compare with a settled one.
	waitSnapshotVersion(t, p.ref)
	var shapes [2]snapshotShape
	var buckets [2]string
	p.both(func(tg *target) {
		i := 0
		if tg == p.sut {
			i = 1
		}
		shapes[i], buckets[i] = snapshot(t, tg)
	})
	if d := cmp.Diff(shapes[0], shapes[1]); d != "" {
		t.Errorf("DIFFERENCE in Snapshot stream shape (-%s +%s):\n%s", p.ref.name, p.sut.name, d)
	}
	t.Logf("%s snapshot buckets: %s", p.ref.name, buckets[0])
	t.Logf("%s snapshot buckets: %s", p.sut.name, buckets[1])
	if !shapes[0].ChecksumTrailer || !shapes[0].Bolt {
		t.Errorf("reference snapshot not understood: %+v", shapes[0])
	}
}

// snapshot reads a Snapshot stream and describes it.
func snapshot(t *testing.T, tg *target) (snapshotShape, string) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var sh snapshotShape
	s, err := tg.maint.Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		sh.Err = errString(err)
		return sh, ""
	}
	var msgs []*pb.SnapshotResponse
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			sh.Err = errString(err)
			return sh, ""
		}
		msgs = append(msgs, m)
	}
	if len(msgs) < 2 {
		sh.Err = fmt.Sprintf("%d messages", len(msgs))
		return sh, ""
	}
	var data []byte
	versions := map[string]bool{}
	for _, m := range msgs {
		versions[m.Version] = true
		if m.Header != nil {
			sh.HeaderSet = true
		}
	}
	for v := range versions {
		sh.Version += v
	}
	if len(versions) > 1 {
		sh.Version = fmt.Sprint("mixed: ", versions)
	}
	body, trailer := msgs[:len(msgs)-1], msgs[len(msgs)-1]
	for _, m := range body {
		data = append(data, m.Blob...)
	}
	sum := sha256.Sum256(data)
	sh.ChecksumTrailer = bytes.Equal(trailer.Blob, sum[:]) && trailer.RemainingBytes == 0
	sent := 0
	sh.RemainingConsistent = true
	for _, m := range body {
		sent += len(m.Blob)
		if m.RemainingBytes != uint64(len(data)-sent) {
			sh.RemainingConsistent = false
		}
	}
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("write snapshot: %v", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return sh, "not a bbolt database: " + err.Error()
	}
	defer db.Close()
	var names []string
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			names = append(names, fmt.Sprintf("%s(%d keys)", name, bk.Stats().KeyN))
			return nil
		})
	})
	sh.Bolt = err == nil
	sort.Strings(names)
	return sh, strings.Join(names, " ")
}

// TestMemberList compares the shape of the single-member cluster: one
// member, named as configured, whose ID is the header's member ID and whose
// client URL is the one the test connected to.
func TestMemberList(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	for _, lin := range []bool{false, true} {
		p.run(t, call{
			desc: fmt.Sprintf("MemberList (linearizable=%v), shape", lin),
			do: func(ctx context.Context, tg *target) (proto.Message, error) {
				resp, err := tg.cluster.MemberList(ctx, &pb.MemberListRequest{Linearizable: lin})
				if err != nil {
					return nil, err
				}
				for _, m := range resp.Members {
					if resp.Header != nil && m.ID == resp.Header.MemberId {
						m.ID = 1 // "is the responding member"
					}
					if m.Name == tg.memberName {
						m.Name = "<configured name>"
					}
					for i, u := range m.ClientURLs {
						if u == tg.endpoint {
							m.ClientURLs[i] = "<endpoint>"
						}
					}
					// A single herd store has no peer listener (peers come
					// with replication), so it lists no peer URLs where etcd
					// lists its own. Nothing a client does depends on them.
					m.PeerURLs = nil
				}
				return resp, nil
			},
		})
	}
	p.run(t, call{desc: "clientv3 MemberList, count", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := tg.cli.MemberList(ctx)
		if err != nil {
			return nil, err
		}
		return &pb.MemberListResponse{Header: resp.Header, Members: []*pb.Member{{Name: fmt.Sprint(len(resp.Members), " members")}}}, nil
	}})
}

// TestMaintenanceMisc covers the maintenance calls kube-apiserver and
// etcdctl make besides Status: alarms and defragmentation.
func TestMaintenanceMisc(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	seedHistory(t, p)
	p.run(t, call{desc: "Alarm GET", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		return tg.maint.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
	}})
	p.run(t, call{desc: "gRPC health check", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		resp, err := healthpb.NewHealthClient(tg.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return nil, err
		}
		return &pb.StatusResponse{Version: resp.Status.String()}, nil
	}})
	p.run(t, call{desc: "AuthStatus", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		return pb.NewAuthClient(tg.conn).AuthStatus(ctx, &pb.AuthStatusRequest{})
	}})
	p.run(t, call{desc: "Defragment", do: func(ctx context.Context, tg *target) (proto.Message, error) {
		return tg.maint.Defragment(ctx, &pb.DefragmentRequest{})
	}})
	p.run(t, rangeCall("after defragment", &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}))
}

// TestRequestSize checks the request size limits: etcd refuses a write whose
// raft entry exceeds MaxRequestBytes (1.5 MiB) with "request is too large",
// and gRPC refuses any message above MaxRequestBytes + 512 KiB.
func TestRequestSize(t *testing.T) {
	p := newPair(t, serverOpts{FastElection: true})
	val := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	const mib = 1024 * 1024
	cases := []struct {
		name string
		c    call
	}{
		{"put 1 MiB", putCall("1 MiB", &pb.PutRequest{Key: b("k"), Value: val(mib)})},
		{"put 1.5 MiB + 1 KiB", putCall("1.5 MiB + 1 KiB", &pb.PutRequest{Key: b("k"), Value: val(mib + mib/2 + 1024)})},
		{"put 2.5 MiB", putCall("2.5 MiB", &pb.PutRequest{Key: b("k"), Value: val(2*mib + mib/2)})},
		{"txn of two 0.9 MiB puts", txnCall("2 x 0.9 MiB", &pb.TxnRequest{Success: []*pb.RequestOp{
			opPutReq(&pb.PutRequest{Key: b("t1"), Value: val(9 * mib / 10)}), opPutReq(&pb.PutRequest{Key: b("t2"), Value: val(9 * mib / 10)})}})},
		{"range with a 1.6 MiB key", rangeCall("1.6 MiB key", &pb.RangeRequest{Key: val(mib + 6*mib/10)})},
		{"range with a 2.5 MiB key", rangeCall("2.5 MiB key", &pb.RangeRequest{Key: val(2*mib + mib/2)})},
		{"delete with a 1.6 MiB key", deleteCall("1.6 MiB key", &pb.DeleteRangeRequest{Key: val(mib + 6*mib/10)})},
		{"watch with a 1.6 MiB key", watchCreateCall("1.6 MiB key", &pb.WatchCreateRequest{Key: val(mib + 6*mib/10)})},
		{"watch with a 2.5 MiB key", watchCreateCall("2.5 MiB key", &pb.WatchCreateRequest{Key: val(2*mib + mib/2)})},
		{"state", rangeCall("keys", &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, KeysOnly: true})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { p.run(t, c.c) })
	}
}

// memberID returns the member ID tg reports in response headers.
func memberID(ctx context.Context, tg *target) (uint64, error) {
	resp, err := tg.kv.Range(ctx, &pb.RangeRequest{Key: b("x"), CountOnly: true, Serializable: true})
	if err != nil {
		return 0, err
	}
	return resp.Header.MemberId, nil
}

// alarmCall sends an alarm request for the target's own member (memberID
// -1 stands for "self") and reports member IDs equal to its own as 1.
func alarmCall(action pb.AlarmRequest_AlarmAction, alarm pb.AlarmType, self bool) call {
	return call{
		desc: fmt.Sprintf("Alarm %s %s (own member: %v)", action, alarm, self),
		do: func(ctx context.Context, tg *target) (proto.Message, error) {
			id, err := memberID(ctx, tg)
			if err != nil {
				return nil, err
			}
			req := &pb.AlarmRequest{Action: action, Alarm: alarm}
			if self {
				req.MemberID = id
			} else {
				req.MemberID = 12345
			}
			resp, err := tg.maint.Alarm(ctx, req)
			if err != nil {
				return nil, err
			}
			for _, a := range resp.Alarms {
				if a.MemberID == id {
					a.MemberID = 1
				}
			}
			return resp, nil
		},
	}
}

// TestAlarm raises NOSPACE and CORRUPT alarms through the API and checks
// which requests each one blocks, and that alarms survive a restart.
func TestAlarm(t *testing.T) {
	// writes runs one request of each kind.
	writes := func(t *testing.T, p *pair, phase string) {
		t.Helper()
		p.run(t, putCall(phase, &pb.PutRequest{Key: b("a"), Value: b(phase)}))
		p.run(t, putCall(phase+" with lease", &pb.PutRequest{Key: b("l"), Value: b(phase), Lease: 1}))
		p.run(t, deleteCall(phase, &pb.DeleteRangeRequest{Key: b("zz")}))
		p.run(t, txnCall(phase+" read-only", &pb.TxnRequest{Success: []*pb.RequestOp{opRange("a", "")}}))
		p.run(t, txnCall(phase+" with put", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("t", phase)}}))
		p.run(t, txnCall(phase+" with delete", &pb.TxnRequest{Success: []*pb.RequestOp{opDelete("t", "")}}))
		p.run(t, rangeCall(phase, &pb.RangeRequest{Key: b("a")}))
		p.run(t, grantCall(phase, &pb.LeaseGrantRequest{ID: 2, TTL: 600}))
		p.run(t, revokeCall(phase, "", 2))
		p.run(t, keepAliveCall(phase, "", 1))
	}
	setup := func(t *testing.T, p *pair) {
		p.run(t, grantCall("lease 1", &pb.LeaseGrantRequest{ID: 1, TTL: 600}))
		p.put(t, "a", "1")
	}
	fast := serverOpts{FastElection: true}
	runScenarios(t, []scenario{
		{name: "requests under alarms", opts: fast, run: func(t *testing.T, p *pair) {
			setup(t, p)
			p.run(t, alarmCall(pb.AlarmRequest_GET, pb.AlarmType_NONE, true))
			p.run(t, alarmCall(pb.AlarmRequest_ACTIVATE, pb.AlarmType_NOSPACE, true))
			p.run(t, alarmCall(pb.AlarmRequest_ACTIVATE, pb.AlarmType_NOSPACE, true))
			p.run(t, alarmCall(pb.AlarmRequest_GET, pb.AlarmType_NONE, true))
			p.run(t, alarmCall(pb.AlarmRequest_GET, pb.AlarmType_CORRUPT, true))
			writes(t, p, "under NOSPACE")
			p.run(t, statusCall(p, nil))
			p.run(t, compactCall("under NOSPACE", &pb.CompactionRequest{Revision: 2}))
			p.run(t, alarmCall(pb.AlarmRequest_DEACTIVATE, pb.AlarmType_NOSPACE, true))
			p.run(t, alarmCall(pb.AlarmRequest_DEACTIVATE, pb.AlarmType_NOSPACE, true))
			p.run(t, alarmCall(pb.AlarmRequest_ACTIVATE, pb.AlarmType_NOSPACE, false))
			p.run(t, alarmCall(pb.AlarmRequest_GET, pb.AlarmType_NONE, true))
			writes(t, p, "NOSPACE raised for another member")
			p.run(t, alarmCall(pb.AlarmRequest_DEACTIVATE, pb.AlarmType_NOSPACE, false))
			writes(t, p, "after deactivation")
			p.run(t, alarmCall(pb.AlarmRequest_ACTIVATE, pb.AlarmType_CORRUPT, true))
			writes(t, p, "under CORRUPT")
			p.run(t, statusCall(p, nil))
			p.run(t, compactCall("under CORRUPT", &pb.CompactionRequest{Revision: 3}))
			p.run(t, alarmCall(pb.AlarmRequest_DEACTIVATE, pb.AlarmType_CORRUPT, true))
			writes(t, p, "after CORRUPT")
			p.run(t, alarmCall(pb.AlarmRequest_ACTIVATE, pb.AlarmType_NONE, true))
			p.run(t, alarmCall(pb.AlarmRequest_GET, pb.AlarmType_NONE, true))
		}},
		{name: "alarm survives restart", opts: fast, run: func(t *testing.T, p *pair) {
			setup(t, p)
			p.run(t, alarmCall(pb.AlarmRequest_ACTIVATE, pb.AlarmType_NOSPACE, true))
			p.restart(t)
			p.run(t, alarmCall(pb.AlarmRequest_GET, pb.AlarmType_NONE, true))
			p.run(t, putCall("after restart under NOSPACE", &pb.PutRequest{Key: b("a"), Value: b("x")}))
		}},
	})
}

// watchCreateCall opens a stream, creates one watch and returns the first
// response (or how the stream failed). The created response carries a very
// long key back only in the request, so the response stays small.
func watchCreateCall(desc string, r *pb.WatchCreateRequest) call {
	return call{desc: "Watch create " + desc, do: func(ctx context.Context, tg *target) (proto.Message, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := tg.watch.Watch(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: r}}); err != nil {
			return nil, err
		}
		return s.Recv()
	}}
}

// waitSnapshotVersion waits until tg's snapshots carry a storage version.
func waitSnapshotVersion(t *testing.T, tg *target) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if shape, _ := snapshot(t, tg); shape.Version != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s snapshots carry no storage version after 30s", tg.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
