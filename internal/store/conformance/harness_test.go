package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
)

const (
	// envTarget selects the system under test: "herd" (default) or "etcd".
	envTarget = "HERD_CONFORMANCE_TARGET"

	// startTimeout bounds how long a server may take to become ready.
	startTimeout = 30 * time.Second
	// callTimeout bounds a single request.
	callTimeout = 10 * time.Second
	// quietTimeout is how long a test waits for a response that must not
	// come (or that the reference sends within its 100ms sync loop).
	quietTimeout = 3 * time.Second
)

// serverOpts are the settings a test may set, always equally on both sides.
type serverOpts struct {
	// MaxRequestBytes overrides the request size limit (0: etcd's default).
	MaxRequestBytes uint
	// FastElection shortens the reference's raft heartbeat and election
	// timeout so that it starts in a few tens of milliseconds instead of about
	// a second. Raft timing is invisible through the API except for the
	// minimum lease TTL (derived from the election timeout), so only tests
	// that do not depend on it may set this.
	FastElection bool
	// WatchProgressNotifyInterval overrides the interval of progress
	// notifications to watchers that asked for them (0: etcd's default, 10
	// minutes). etcd keeps it in a process-wide variable: only a test that
	// runs alone may set it.
	WatchProgressNotifyInterval time.Duration
	// SUTEtcd makes the system under test an etcd regardless of
	// HERD_CONFORMANCE_TARGET (for the harness's own tests).
	SUTEtcd bool
}

// target is one running server and the clients connected to it.
type target struct {
	// name is "etcd" for the reference, "herd" (or "etcd-sut") otherwise.
	name string
	// endpoint is the client URL, e.g. http://127.0.0.1:2379.
	endpoint string
	// memberName is the configured member name.
	memberName string

	conn    *grpc.ClientConn
	cli     *clientv3.Client
	kv      pb.KVClient
	watch   pb.WatchClient
	lease   pb.LeaseClient
	maint   pb.MaintenanceClient
	cluster pb.ClusterClient

	// restart stops the server (and these clients) and starts it again on
	// the same data directory, returning the new target.
	restart func(t testing.TB) *target
	// disconnect closes the clients (idempotent).
	disconnect func()

	// vars holds per-target values that tests need to carry from one
	// request to the next and that may legitimately differ between the two
	// systems (server-assigned lease IDs, watch IDs, ...).
	mu   sync.Mutex
	vars map[string]int64
}

func (tg *target) set(k string, v int64) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.vars[k] = v
}

func (tg *target) get(k string) int64 {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.vars[k]
}

// sutKind reports the configured system under test.
func sutKind() string {
	switch v := strings.ToLower(os.Getenv(envTarget)); v {
	case "", "herd":
		return "herd"
	case "etcd":
		return "etcd"
	default:
		panic(fmt.Sprintf("%s=%q: want herd or etcd", envTarget, v))
	}
}

// startEtcd starts an embedded etcd with default settings except for opts.
func startEtcd(t testing.TB, name string, opts serverOpts) *target {
	t.Helper()
	return startEtcdIn(t, name, opts, t.TempDir())
}

// startEtcdIn starts an embedded etcd on data directory dir.
func startEtcdIn(t testing.TB, name string, opts serverOpts, dir string) *target {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dir
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(etcdLogger())
	cfg.UnsafeNoFsync = true
	cfg.EnableGRPCGateway = false
	if opts.MaxRequestBytes != 0 {
		cfg.MaxRequestBytes = opts.MaxRequestBytes
	}
	if opts.WatchProgressNotifyInterval != 0 {
		cfg.WatchProgressNotifyInterval = opts.WatchProgressNotifyInterval
	}
	if opts.FastElection {
		cfg.TickMs, cfg.ElectionMs = 10, 100
	}
	// etcd advertises the configured URLs verbatim, so they must carry real
	// ports: pick free ones (and retry if another process takes one first).
	var (
		e   *embed.Etcd
		err error
	)
	for attempt := 0; attempt < 5; attempt++ {
		client, peer := []url.URL{{Scheme: "http", Host: freeAddr(t)}}, []url.URL{{Scheme: "http", Host: freeAddr(t)}}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = client, client
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = peer, peer
		cfg.InitialCluster = cfg.InitialClusterFromName(name)
		e, err = embed.StartEtcd(cfg)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	var once sync.Once
	stop := func() { once.Do(e.Close) }
	t.Cleanup(stop)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd failed: %v", err)
	case <-time.After(startTimeout):
		t.Fatalf("etcd not ready after %v", startTimeout)
	}
	ep := "http://" + e.Clients[0].Addr().String()
	tg := connect(t, "etcd", name, ep)
	tg.restart = func(t testing.TB) *target {
		tg.disconnect()
		stop()
		return startEtcdIn(t, name, opts, dir)
	}
	return tg
}

// etcdLogger logs only etcd's panics and fatal errors (which end the test
// process, so their message must not be lost) to stderr.
func etcdLogger() *zap.Logger {
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(zap.DPanicLevel)
	zc.Encoding = "console"
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	lg, err := zc.Build()
	if err != nil {
		return zap.NewNop()
	}
	return lg
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// connect dials ep with a raw gRPC connection (no size limits, so that the
// server's limits are what a test observes) and with clientv3.
func connect(t testing.TB, kind, member, ep string) *target {
	t.Helper()
	u, err := url.Parse(ep)
	if err != nil {
		t.Fatalf("client URL %q: %v", ep, err)
	}
	conn, err := grpc.NewClient("passthrough:///"+u.Host,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallSendMsgSize(math.MaxInt32),
			grpc.MaxCallRecvMsgSize(math.MaxInt32),
		),
	)
	if err != nil {
		t.Fatalf("dial %s: %v", ep, err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{ep},
		DialTimeout: startTimeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		conn.Close()
		t.Fatalf("clientv3 %s: %v", ep, err)
	}
	var once sync.Once
	disconnect := func() {
		once.Do(func() {
			cli.Close()
			conn.Close()
		})
	}
	t.Cleanup(disconnect)
	return &target{
		disconnect: disconnect,
		name:       kind,
		endpoint:   ep,
		memberName: member,
		conn:       conn,
		cli:        cli,
		kv:         pb.NewKVClient(conn),
		watch:      pb.NewWatchClient(conn),
		lease:      pb.NewLeaseClient(conn),
		maint:      pb.NewMaintenanceClient(conn),
		cluster:    pb.NewClusterClient(conn),
		vars:       map[string]int64{},
	}
}

// pair is the reference etcd and the system under test, started fresh.
type pair struct {
	ref, sut *target

	mu sync.Mutex
	// aliases maps IDs the system under test assigned itself (leases) to the
	// reference's IDs for the same object, so that responses mentioning them
	// compare equal.
	aliases map[int64]int64

	// fault, if set, alters the system under test's outcomes (the harness's
	// own tests inject differences with it).
	fault func(c call, o *outcome)
}

// alias records that the system under test's ID sutID stands for the
// reference's refID.
func (p *pair) alias(sutID, refID int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.aliases == nil {
		p.aliases = map[int64]int64{}
	}
	if sutID != refID {
		p.aliases[sutID] = refID
	}
}

// unalias rewrites, in place, every lease ID in a (normalized copy of a)
// response of the system under test to the reference's ID.
func (p *pair) unalias(m proto.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if isNil(m) || len(p.aliases) == 0 {
		return
	}
	rewriteIDs(m.ProtoReflect(), p.aliases)
}

// rewriteIDs maps int64 fields named "lease" or "ID" (lease IDs in KeyValue
// and in the lease messages) through aliases.
func rewriteIDs(m protoreflect.Message, aliases map[int64]int64) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() == protoreflect.Int64Kind && !fd.IsList() && (fd.Name() == "lease" || fd.Name() == "ID"):
			if to, ok := aliases[v.Int()]; ok {
				m.Set(fd, protoreflect.ValueOfInt64(to))
			}
		case fd.Message() != nil && fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				rewriteIDs(l.Get(i).Message(), aliases)
			}
		case fd.Message() != nil && !fd.IsMap():
			rewriteIDs(v.Message(), aliases)
		}
		return true
	})
}

// newPair starts both systems concurrently.
func newPair(t testing.TB, opts serverOpts) *pair {
	t.Helper()
	startSUT := func(tb testing.TB) *target { return startHerd(tb, "sut", opts) }
	if sutKind() == "etcd" || opts.SUTEtcd {
		startSUT = func(tb testing.TB) *target { return startEtcd(tb, "sut", opts) }
	}
	ref, sut := startBoth(t, "starting", func(tb testing.TB) *target { return startEtcd(tb, "ref", opts) }, startSUT)
	if sut.name == "etcd" {
		sut.name = "etcd-sut"
	}
	t.Logf("reference etcd at %s, system under test %s at %s", ref.endpoint, sut.name, sut.endpoint)
	return &pair{ref: ref, sut: sut}
}

// restart restarts both systems on their data directories.
func (p *pair) restart(t testing.TB) {
	t.Helper()
	ref, sut := startBoth(t, "restarting", p.ref.restart, p.sut.restart)
	sut.name = p.sut.name
	p.ref, p.sut = ref, sut
}

// startBoth runs both start functions concurrently. They may call Fatalf:
// that must not happen on the test from another goroutine, so each runs
// against a recorder, and startBoth fails the test afterwards.
func startBoth(t testing.TB, what string, startRef, startSUT func(testing.TB) *target) (ref, sut *target) {
	t.Helper()
	var (
		wg   sync.WaitGroup
		errs [2]string
	)
	run := func(i int, start func(testing.TB) *target, out **target) {
		defer wg.Done()
		r := &startRecorder{TB: t}
		defer func() {
			if v := recover(); v != nil && v != errStartFailed {
				errs[i] = fmt.Sprint(v)
			}
			errs[i] += r.msg
		}()
		*out = start(r)
	}
	wg.Add(2)
	go run(0, startRef, &ref)
	go run(1, startSUT, &sut)
	wg.Wait()
	if errs[0] != "" || errs[1] != "" {
		t.Fatalf("%s servers: reference: %s; system under test: %s", what, orNone(errs[0]), orNone(errs[1]))
	}
	return ref, sut
}

func orNone(s string) string {
	if s == "" {
		return "ok"
	}
	return s
}

var errStartFailed = errors.New("start failed")

// startRecorder turns Fatalf into a panic caught by startBoth.
type startRecorder struct {
	testing.TB
	msg string
}

func (r *startRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(errStartFailed)
}

func (r *startRecorder) Helper() {}

// both runs fn against both targets concurrently.
func (p *pair) both(fn func(tg *target)) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); fn(p.ref) }()
	go func() { defer wg.Done(); fn(p.sut) }()
	wg.Wait()
}

// outcome is one system's answer to a call.
type outcome struct {
	resp proto.Message
	err  error
}

// call is one request, run the same way against each target.
type call struct {
	// desc names the request in reports.
	desc string
	// req, if set, is printed in reports.
	req proto.Message
	// do performs the request.
	do func(ctx context.Context, tg *target) (proto.Message, error)
	// reconcile, if set, is given normalized copies of both successful
	// responses before they are compared; it may verify fields that only
	// need to agree within a tolerance, then make them equal. A non-nil
	// error is reported as a difference.
	reconcile func(ref, sut proto.Message) error
}

// run performs c against both targets, compares the results and reports a
// difference with t.Errorf. It returns both raw outcomes.
func (p *pair) run(t testing.TB, c call) (ref, sut outcome) {
	t.Helper()
	ref, sut, d := p.exec(c)
	if d != "" {
		t.Errorf("%s", p.report(c, d, ref, sut))
	}
	return ref, sut
}

// exec performs c against both targets and returns both outcomes and their
// difference ("" if none).
func (p *pair) exec(c call) (ref, sut outcome, diff string) {
	p.both(func(tg *target) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		resp, err := c.do(ctx, tg)
		o := outcome{resp: resp, err: err}
		if tg == p.ref {
			ref = o
		} else {
			sut = o
		}
	})
	if p.fault != nil {
		p.fault(c, &sut)
	}
	return ref, sut, p.diff(c, ref, sut)
}

// report formats a difference readably.
func (p *pair) report(c call, diff string, ref, sut outcome) string {
	var b strings.Builder
	fmt.Fprintf(&b, "DIFFERENCE in %s\n", c.desc)
	if c.req != nil {
		fmt.Fprintf(&b, "  request (%T): %s\n", c.req, oneLine(c.req))
	}
	fmt.Fprintf(&b, "  %s: %s\n", p.ref.name, outcomeString(ref))
	fmt.Fprintf(&b, "  %s: %s\n", p.sut.name, outcomeString(sut))
	fmt.Fprintf(&b, "  diff (-%s +%s):\n%s", p.ref.name, p.sut.name, indent(diff, "    "))
	return b.String()
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// diff returns "" if both outcomes agree after normalization.
func (p *pair) diff(c call, ref, sut outcome) string {
	if ref.err != nil || sut.err != nil {
		re, se := errString(ref.err), errString(sut.err)
		if re != se {
			return cmp.Diff(re, se)
		}
		return ""
	}
	r, s := normalize(ref.resp), normalize(sut.resp)
	p.unalias(s)
	if c.reconcile != nil {
		if err := c.reconcile(r, s); err != nil {
			return err.Error()
		}
	}
	return protoDiff(r, s)
}

// protoDiff returns "" if a and b are equal protos (nil and empty count as
// different only if one of them is nil).
func protoDiff(a, b proto.Message) string {
	if isNil(a) || isNil(b) {
		if isNil(a) && isNil(b) {
			return ""
		}
		return cmp.Diff(oneLineOrNil(a), oneLineOrNil(b))
	}
	if proto.Equal(a, b) {
		return ""
	}
	return cmp.Diff(a, b, protocmp.Transform())
}

func isNil(m proto.Message) bool {
	return m == nil || !m.ProtoReflect().IsValid()
}

func oneLineOrNil(m proto.Message) string {
	if isNil(m) {
		return "<nil>"
	}
	return oneLine(m)
}

// oneLine renders a message compactly for reports.
func oneLine(m proto.Message) string {
	if isNil(m) {
		return "<nil>"
	}
	s := prototext.MarshalOptions{Multiline: false}.Format(m)
	if len(s) > 2000 {
		s = s[:2000] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	if s == "" {
		return "{}"
	}
	return "{" + s + "}"
}

func outcomeString(o outcome) string {
	if o.err != nil {
		return "error " + errString(o.err)
	}
	return oneLine(normalize(o.resp))
}

// errString is the comparable form of an error: its gRPC code and message.
// clientv3 turns well-known gRPC errors into rpctypes.EtcdError values; those
// carry the same code and message.
func errString(err error) string {
	if err == nil {
		return "ok"
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return fmt.Sprintf("code=%s desc=%q", ee.Code(), ee.Error())
	}
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("code=%s desc=%q", s.Code(), s.Message())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("code=%s desc=%q", codes.DeadlineExceeded, "no answer in time (client deadline)")
	}
	return "error " + err.Error()
}

// headerName is the full name of the header message whose cluster-specific
// fields are cleared before comparison.
var headerName = (&pb.ResponseHeader{}).ProtoReflect().Descriptor().FullName()

// normalize returns a copy of m with ClusterId, MemberId and RaftTerm cleared
// in every ResponseHeader, however deeply nested (txn responses contain
// headers in each response op).
func normalize(m proto.Message) proto.Message {
	if isNil(m) {
		return m
	}
	c := proto.Clone(m)
	clearHeaders(c.ProtoReflect())
	return c
}

func clearHeaders(m protoreflect.Message) {
	if m.Descriptor().FullName() == headerName {
		fields := m.Descriptor().Fields()
		for _, n := range []protoreflect.Name{"cluster_id", "member_id", "raft_term"} {
			m.Clear(fields.ByName(n))
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				clearHeaders(l.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				clearHeaders(mv.Message())
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			clearHeaders(v.Message())
		}
		return true
	})
}

// named joins a request kind and a description.
func named(kind, desc string) string {
	if desc == "" {
		return kind
	}
	return kind + " " + desc
}

// Calls for the common raw requests.

func rangeCall(desc string, r *pb.RangeRequest) call {
	return call{desc: named("Range", desc), req: r, do: func(ctx context.Context, tg *target) (proto.Message, error) {
		return tg.kv.Range(ctx, r)
	}}
}

func putCall(desc string, r *pb.PutRequest) call {
	return call{desc: named("Put", desc), req: r, do: func(ctx context.Context, tg *target) (proto.Message, error) {
		return tg.kv.Put(ctx, r)
	}}
}

func deleteCall(desc string, r *pb.DeleteRangeRequest) call {
	return call{desc: named("DeleteRange", desc), req: r, do: func(ctx context.Context, tg *target) (proto.Message, error) {
		return tg.kv.DeleteRange(ctx, r)
	}}
}

func txnCall(desc string, r *pb.TxnRequest) call {
	return call{desc: named("Txn", desc), req: r, do: func(ctx context.Context, tg *target) (proto.Message, error) {
		return tg.kv.Txn(ctx, r)
	}}
}

func compactCall(desc string, r *pb.CompactionRequest) call {
	return call{desc: named("Compact", desc), req: r, do: func(ctx context.Context, tg *target) (proto.Message, error) {
		return tg.kv.Compact(ctx, r)
	}}
}

// put writes key=value on both sides and checks the responses agree.
func (p *pair) put(t testing.TB, key, value string) {
	t.Helper()
	p.run(t, putCall(fmt.Sprintf("%q=%q", key, value), &pb.PutRequest{Key: []byte(key), Value: []byte(value)}))
}

// rev returns the reference's current revision (failing the test if the two
// systems disagree about it).
func (p *pair) rev(t testing.TB) int64 {
	t.Helper()
	ref, _ := p.run(t, rangeCall("(current revision)", &pb.RangeRequest{Key: []byte{0}, CountOnly: true}))
	if ref.err != nil {
		t.Fatalf("reference Range: %v", ref.err)
	}
	return ref.resp.(*pb.RangeResponse).Header.Revision
}

// scenario is one row of a scenario table.
type scenario struct {
	name string
	opts serverOpts
	run  func(t *testing.T, p *pair)
}

// runScenarios runs each scenario on a fresh pair of servers, in parallel.
func runScenarios(t *testing.T, scs []scenario) {
	t.Helper()
	for _, sc := range scs {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, newPair(t, sc.opts))
		})
	}
}

// b is shorthand for a byte slice key or value.
func b(s string) []byte { return []byte(s) }
