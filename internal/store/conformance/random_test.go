package conformance

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Settings of the random test; each flag has an environment variable that
// takes precedence (go test caches flags less surprisingly than env, but env
// is easier in CI).
var (
	flagSeed   = flag.Uint64("conformance.seed", 0, "run only this seed (env HERD_CONFORMANCE_SEED)")
	flagSeeds  = flag.Int("conformance.seeds", 8, "number of seeds, starting at 1 (env HERD_CONFORMANCE_SEEDS)")
	flagSteps  = flag.Int("conformance.steps", 500, "operations per seed (env HERD_CONFORMANCE_STEPS)")
	flagShrink = flag.Duration("conformance.shrink", 90*time.Second, "time budget for shrinking a failing sequence (env HERD_CONFORMANCE_SHRINK)")
)

func envInt(name string, def int64) int64 {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			panic(fmt.Sprintf("%s=%q: %v", name, v, err))
		}
		return n
	}
	return def
}

func shrinkBudget() time.Duration {
	if v := os.Getenv("HERD_CONFORMANCE_SHRINK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			panic(fmt.Sprintf("HERD_CONFORMANCE_SHRINK=%q: %v", v, err))
		}
		return d
	}
	return *flagShrink
}

// runConfig configures random runs.
type runConfig struct {
	opts  serverOpts
	fault func(c call, o *outcome)
}

// randomConfig is the configuration of TestRandom. Leases are granted with
// long TTLs, so the minimum TTL (the only API-visible effect of raft timing)
// never matters and the reference can start fast.
var randomConfig = runConfig{opts: serverOpts{FastElection: true}}

// TestRandom runs seeded random operation sequences against both systems,
// comparing every response, and at the end every watch's events. The first
// difference of a seed is shrunk to a minimal sequence that still shows a
// difference, which is printed and saved for TestRandomReplay.
func TestRandom(t *testing.T) {
	steps := int(envInt("HERD_CONFORMANCE_STEPS", int64(*flagSteps)))
	var seeds []uint64
	if s := uint64(envInt("HERD_CONFORMANCE_SEED", int64(*flagSeed))); s != 0 {
		seeds = []uint64{s}
	} else {
		for i := 1; i <= int(envInt("HERD_CONFORMANCE_SEEDS", int64(*flagSeeds))); i++ {
			seeds = append(seeds, uint64(i))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			g := newGenerator(seed)
			ops, f := runSequence(t, randomConfig, g, steps)
			if f == nil {
				return
			}
			t.Errorf("seed %d: DIFFERENCE at step %d of %d:\n%s", seed, f.step+1, len(ops), f.report)
			small, runs := shrink(t, randomConfig, ops[:f.step+1], shrinkBudget())
			if small.fail == nil {
				path := saveSequence(t, seed, ops[:f.step+1])
				t.Errorf("seed %d: the difference did not show again on fresh servers (timing-dependent?); the sequence is saved in %s", seed, path)
				return
			}
			path := saveSequence(t, seed, small.ops)
			t.Errorf("seed %d: minimal failing sequence (%d of %d ops, %d shrink runs):\n%s\n"+
				"the difference it shows (at op %d):\n%s\n"+
				"reproduce: HERD_CONFORMANCE_SEED=%d HERD_CONFORMANCE_STEPS=%d go test ./internal/store/conformance -run 'TestRandom$'\n"+
				"replay the minimal sequence: HERD_CONFORMANCE_REPLAY=%s go test ./internal/store/conformance -run TestRandomReplay -v",
				seed, len(small.ops), f.step+1, runs, formatOps(small.ops), small.fail.step+1, small.fail.report, seed, f.step+1, path)
		})
	}
}

// TestRandomReplay replays a sequence saved by TestRandom
// (HERD_CONFORMANCE_REPLAY=file.json) and reports its first difference.
func TestRandomReplay(t *testing.T) {
	path := os.Getenv("HERD_CONFORMANCE_REPLAY")
	if path == "" {
		t.Skip("set HERD_CONFORMANCE_REPLAY to a sequence file written by TestRandom")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ops []genOp
	if err := json.Unmarshal(data, &ops); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Logf("replaying %d ops:\n%s", len(ops), formatOps(ops))
	_, f := runSequence(t, randomConfig, &replay{ops: ops}, len(ops))
	if f != nil {
		t.Errorf("DIFFERENCE at op %d:\n%s", f.step+1, f.report)
	}
}

// genOp is one operation of a random sequence. Exactly one of the request
// fields is set.
type genOp struct {
	Put       *pb.PutRequest
	Delete    *pb.DeleteRangeRequest
	Range     *pb.RangeRequest
	Txn       *pb.TxnRequest
	Compact   *pb.CompactionRequest
	Grant     *pb.LeaseGrantRequest
	Revoke    *pb.LeaseRevokeRequest
	TTL       *pb.LeaseTimeToLiveRequest
	Leases    *pb.LeaseLeasesRequest
	KeepAlive *pb.LeaseKeepAliveRequest
	// Watch creates watch number Label on stream Stream.
	Watch  *pb.WatchCreateRequest
	Stream int
	Label  int
	// Cancel cancels watch number Label (if it exists).
	Cancel bool
}

// kind names the operation, req is its request.
func (o *genOp) kind() (string, proto.Message) {
	switch {
	case o.Put != nil:
		return "put", o.Put
	case o.Delete != nil:
		return "delete", o.Delete
	case o.Range != nil:
		return "range", o.Range
	case o.Txn != nil:
		return "txn", o.Txn
	case o.Compact != nil:
		return "compact", o.Compact
	case o.Grant != nil:
		return "grant", o.Grant
	case o.Revoke != nil:
		return "revoke", o.Revoke
	case o.TTL != nil:
		return "ttl", o.TTL
	case o.Leases != nil:
		return "leases", o.Leases
	case o.KeepAlive != nil:
		return "keepalive", o.KeepAlive
	case o.Watch != nil:
		return "watch", o.Watch
	case o.Cancel:
		return "cancel", nil
	}
	return "invalid", nil
}

func (o genOp) String() string {
	k, req := o.kind()
	switch k {
	case "watch":
		return fmt.Sprintf("watch #%d on stream %d %s", o.Label, o.Stream, oneLine(req))
	case "cancel":
		return fmt.Sprintf("cancel watch #%d", o.Label)
	}
	return k + " " + oneLine(req)
}

// jsonOp is genOp's file form: the request in protojson.
type jsonOp struct {
	Op     string          `json:"op"`
	Req    json.RawMessage `json:"req,omitempty"`
	Stream int             `json:"stream,omitempty"`
	Label  int             `json:"label,omitempty"`
}

func (o genOp) MarshalJSON() ([]byte, error) {
	k, req := o.kind()
	j := jsonOp{Op: k, Stream: o.Stream, Label: o.Label}
	if req != nil {
		data, err := protojson.Marshal(req)
		if err != nil {
			return nil, err
		}
		j.Req = data
	}
	return json.Marshal(j)
}

func (o *genOp) UnmarshalJSON(data []byte) error {
	var j jsonOp
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*o = genOp{Stream: j.Stream, Label: j.Label}
	var req proto.Message
	switch j.Op {
	case "put":
		o.Put = &pb.PutRequest{}
		req = o.Put
	case "delete":
		o.Delete = &pb.DeleteRangeRequest{}
		req = o.Delete
	case "range":
		o.Range = &pb.RangeRequest{}
		req = o.Range
	case "txn":
		o.Txn = &pb.TxnRequest{}
		req = o.Txn
	case "compact":
		o.Compact = &pb.CompactionRequest{}
		req = o.Compact
	case "grant":
		o.Grant = &pb.LeaseGrantRequest{}
		req = o.Grant
	case "revoke":
		o.Revoke = &pb.LeaseRevokeRequest{}
		req = o.Revoke
	case "ttl":
		o.TTL = &pb.LeaseTimeToLiveRequest{}
		req = o.TTL
	case "leases":
		o.Leases = &pb.LeaseLeasesRequest{}
		req = o.Leases
	case "keepalive":
		o.KeepAlive = &pb.LeaseKeepAliveRequest{}
		req = o.KeepAlive
	case "watch":
		o.Watch = &pb.WatchCreateRequest{}
		req = o.Watch
	case "cancel":
		o.Cancel = true
		return nil
	default:
		return fmt.Errorf("unknown op %q", j.Op)
	}
	if len(j.Req) == 0 {
		return nil
	}
	return protojson.Unmarshal(j.Req, req)
}

func formatOps(ops []genOp) string {
	var b strings.Builder
	for i, o := range ops {
		fmt.Fprintf(&b, "  %3d. %s\n", i+1, o)
	}
	return b.String()
}

// saveSequence writes ops as JSON to a file that outlives the test and
// returns its path.
func saveSequence(t *testing.T, seed uint64, ops []genOp) string {
	data, err := json.MarshalIndent(ops, "", " ")
	if err != nil {
		t.Fatalf("encode sequence: %v", err)
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("herd-conformance-seed%d-%d.json", seed, time.Now().UnixNano()))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Logf("cannot save sequence: %v; it is:\n%s", err, data)
		return "(not saved)"
	}
	t.Logf("sequence (also saved to %s):\n%s", path, data)
	return path
}

// model is what the generator knows about the store: the reference's
// answers so far.
type model struct {
	rev        int64 // current revision
	compactRev int64 // last successful compaction (0: none)
	nextLabel  int   // label of the next watch
	live       []int // labels of watches that may be canceled
}

// source yields the operations of a run.
type source interface {
	next(m *model) (genOp, bool)
}

// replay yields a fixed sequence.
type replay struct {
	ops []genOp
	i   int
}

func (r *replay) next(*model) (genOp, bool) {
	if r.i >= len(r.ops) {
		return genOp{}, false
	}
	r.i++
	return r.ops[r.i-1], true
}

// generator yields random operations over a small key space, so that
// compares, overwrites, deletes and duplicate-key errors are frequent.
type generator struct {
	rnd *rand.Rand
}

func newGenerator(seed uint64) *generator {
	return &generator{rnd: rand.New(rand.NewPCG(seed, 0x6865726463666d))}
}

var (
	genKeys   = []string{"a", "a/1", "a/2", "b", "b/1", "c", "d", "e"}
	genValues = []string{"", "v0", "v1", "v2", "v3"}
	genLeases = []int64{1, 2, 3}
)

func (g *generator) pick(n int) int { return g.rnd.IntN(n) }

func (g *generator) chance(pct int) bool { return g.rnd.IntN(100) < pct }

func (g *generator) key() []byte { return []byte(genKeys[g.pick(len(genKeys))]) }

// end returns a range end for key: none, a prefix end, "\x00", or another
// key (possibly before key, an empty range).
func (g *generator) end(key []byte) []byte {
	switch g.pick(6) {
	case 0, 1:
		return nil
	case 2:
		e := append([]byte(nil), key...)
		e[len(e)-1]++
		return e
	case 3:
		return []byte{0}
	default:
		return g.key()
	}
}

func (g *generator) value() []byte { return []byte(genValues[g.pick(len(genValues))]) }

func (g *generator) lease() int64 {
	if g.chance(80) {
		return 0
	}
	if g.chance(15) {
		return 9 // never granted
	}
	return genLeases[g.pick(len(genLeases))]
}

// rev returns a revision around the interesting window: mostly valid
// historic revisions, sometimes compacted or future ones.
func (g *generator) rev(m *model) int64 {
	lo := max(m.compactRev-1, 1)
	hi := m.rev + 1
	return lo + g.rnd.Int64N(hi-lo+1)
}

func (g *generator) next(m *model) (genOp, bool) {
	switch w := g.pick(100); {
	case w < 28:
		return genOp{Put: g.put(m)}, true
	case w < 38:
		return genOp{Delete: g.del()}, true
	case w < 56:
		return genOp{Range: g.rangeReq(m)}, true
	case w < 80:
		return genOp{Txn: g.txn(m, 0)}, true
	case w < 82:
		return genOp{Compact: &pb.CompactionRequest{Revision: g.rev(m), Physical: true}}, true
	case w < 88:
		req := &pb.WatchCreateRequest{Key: g.key(), PrevKv: g.chance(50), Fragment: g.chance(10)}
		req.RangeEnd = g.end(req.Key)
		if g.chance(60) {
			lo := max(m.compactRev-2, 1)
			req.StartRevision = lo + g.rnd.Int64N(m.rev-lo+1)
		}
		if g.chance(20) {
			req.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_FilterType(g.pick(2))}
		}
		m.nextLabel++
		return genOp{Watch: req, Stream: g.pick(2), Label: m.nextLabel}, true
	case w < 91:
		if len(m.live) == 0 {
			return g.next(m)
		}
		return genOp{Cancel: true, Label: m.live[g.pick(len(m.live))]}, true
	case w < 93:
		return genOp{Grant: &pb.LeaseGrantRequest{ID: genLeases[g.pick(len(genLeases))], TTL: 3600}}, true
	case w < 95:
		return genOp{Revoke: &pb.LeaseRevokeRequest{ID: genLeases[g.pick(len(genLeases))]}}, true
	case w < 97:
		return genOp{TTL: &pb.LeaseTimeToLiveRequest{ID: g.lease(), Keys: g.chance(70)}}, true
	case w < 98:
		return genOp{Leases: &pb.LeaseLeasesRequest{}}, true
	default:
		return genOp{KeepAlive: &pb.LeaseKeepAliveRequest{ID: genLeases[g.pick(len(genLeases))]}}, true
	}
}

func (g *generator) put(m *model) *pb.PutRequest {
	r := &pb.PutRequest{Key: g.key(), Value: g.value(), PrevKv: g.chance(30), Lease: g.lease()}
	if g.chance(5) {
		r.IgnoreValue = true
		if g.chance(70) {
			r.Value = nil
		}
	}
	if g.chance(5) {
		r.IgnoreLease = true
		if g.chance(70) {
			r.Lease = 0
		}
	}
	return r
}

func (g *generator) del() *pb.DeleteRangeRequest {
	r := &pb.DeleteRangeRequest{Key: g.key(), PrevKv: g.chance(40)}
	if g.chance(50) {
		r.RangeEnd = g.end(r.Key)
	}
	return r
}

func (g *generator) rangeReq(m *model) *pb.RangeRequest {
	r := &pb.RangeRequest{Key: g.key(), Serializable: g.chance(20)}
	r.RangeEnd = g.end(r.Key)
	if g.chance(30) {
		r.Limit = []int64{1, 2, 3, 5}[g.pick(4)]
	}
	if g.chance(30) {
		r.Revision = g.rev(m)
	}
	if g.chance(30) {
		r.SortTarget = pb.RangeRequest_SortTarget(g.pick(5))
		r.SortOrder = pb.RangeRequest_SortOrder(g.pick(3))
	}
	r.KeysOnly = g.chance(15)
	r.CountOnly = g.chance(10)
	if g.chance(10) {
		r.MinModRevision = g.rnd.Int64N(m.rev + 1)
	}
	if g.chance(10) {
		r.MaxModRevision = g.rnd.Int64N(m.rev + 1)
	}
	if g.chance(10) {
		r.MinCreateRevision = g.rnd.Int64N(m.rev + 1)
	}
	if g.chance(10) {
		r.MaxCreateRevision = g.rnd.Int64N(m.rev + 1)
	}
	return r
}

func (g *generator) txn(m *model, depth int) *pb.TxnRequest {
	r := &pb.TxnRequest{}
	for range g.pick(4) {
		c := &pb.Compare{Key: g.key(), Target: pb.Compare_CompareTarget(g.pick(5)), Result: pb.Compare_CompareResult(g.pick(4))}
		if g.chance(25) {
			c.RangeEnd = g.end(c.Key)
		}
		switch c.Target {
		case pb.Compare_VALUE:
			c.TargetUnion = &pb.Compare_Value{Value: g.value()}
		case pb.Compare_VERSION:
			c.TargetUnion = &pb.Compare_Version{Version: g.rnd.Int64N(4)}
		case pb.Compare_CREATE:
			c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: g.rnd.Int64N(m.rev + 2)}
		case pb.Compare_MOD:
			c.TargetUnion = &pb.Compare_ModRevision{ModRevision: g.rnd.Int64N(m.rev + 2)}
		case pb.Compare_LEASE:
			c.TargetUnion = &pb.Compare_Lease{Lease: g.lease()}
		}
		r.Compare = append(r.Compare, c)
	}
	ops := func() []*pb.RequestOp {
		var out []*pb.RequestOp
		for range g.pick(4) {
			switch k := g.pick(10); {
			case k < 3:
				out = append(out, opRangeReq(g.rangeReq(m)))
			case k < 6:
				out = append(out, opPutReq(g.put(m)))
			case k < 8:
				out = append(out, opDeleteReq(g.del()))
			default:
				if depth < 2 {
					out = append(out, opTxn(g.txn(m, depth+1)))
				}
			}
		}
		return out
	}
	r.Success, r.Failure = ops(), ops()
	if depth == 0 && hasOp(r, func(op *pb.RequestOp) bool { return op.GetRequestPut() != nil }) {
		// etcd 3.7.3's duplicate-key check does not see deletes with
		// range_end "\x00" (from key), so such a txn can change a key twice
		// in one revision, which etcd does not survive: it panics
		// (txn.put with ignore_value/ignore_lease) or a later historic read
		// is fatal ("range failed to find revision pair"). In txns that put,
		// make such deletes end at "\xff" instead (the same keys here), so
		// that the duplicate-key check applies.
		hasOp(r, func(op *pb.RequestOp) bool {
			if d := op.GetRequestDeleteRange(); d != nil && len(d.RangeEnd) == 1 && d.RangeEnd[0] == 0 {
				d.RangeEnd = []byte{0xff}
			}
			return false
		})
	}
	return r
}

// hasOp reports whether fn holds for an operation anywhere in r, nested
// transactions included; it visits every operation until fn holds.
func hasOp(r *pb.TxnRequest, fn func(*pb.RequestOp) bool) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if fn(op) {
				return true
			}
			if n := op.GetRequestTxn(); n != nil && hasOp(n, fn) {
				return true
			}
		}
	}
	return false
}

// failure is the first difference of a run.
type failure struct {
	step   int // index of the op (len(ops) for the final watch comparison)
	report string
}

// watchState is one watch of a run.
type watchState struct {
	stream       int
	refID, sutID int64
	active       bool
}

// runner executes operations on a fresh pair.
type runner struct {
	p       *pair
	m       model
	streams [2]*watchPair
	watches map[int]*watchState
	// stats counts the reference's outcomes per kind of operation, to show
	// (with -v) what a run exercised.
	stats map[string]int
}

// runSequence runs up to steps operations from src on a fresh pair, stopping
// at the first difference. It returns the operations run and the failure.
func runSequence(t testing.TB, cfg runConfig, src source, steps int) ([]genOp, *failure) {
	t.Helper()
	r := &runner{p: newPair(t, cfg.opts), m: model{rev: 1}, watches: map[int]*watchState{}, stats: map[string]int{}}
	defer func() { t.Logf("reference outcomes: %s", r.summary()) }()
	r.p.fault = cfg.fault
	for i := range r.streams {
		r.streams[i] = r.p.openWatches(t)
	}
	var ops []genOp
	for len(ops) < steps {
		op, ok := src.next(&r.m)
		if !ok {
			break
		}
		ops = append(ops, op)
		d, err := r.exec(op)
		if err != nil {
			t.Fatalf("op %d %s: %v", len(ops), op, err)
		}
		if d != "" {
			return ops, &failure{step: len(ops) - 1, report: d}
		}
	}
	if d, err := r.finish(); err != nil {
		t.Fatalf("final watch comparison: %v", err)
	} else if d != "" {
		return ops, &failure{step: len(ops) - 1, report: "final watch comparison: " + d}
	}
	return ops, nil
}

// call turns a request op into a call.
func (r *runner) call(op genOp) call {
	k, req := op.kind()
	c := call{desc: k, req: req}
	switch k {
	case "put":
		return putCall("", op.Put)
	case "delete":
		return deleteCall("", op.Delete)
	case "range":
		return rangeCall("", op.Range)
	case "txn":
		return txnCall("", op.Txn)
	case "compact":
		return compactCall("", op.Compact)
	case "grant":
		return grantCall("", op.Grant)
	case "revoke":
		return revokeCall("", "", op.Revoke.ID)
	case "ttl":
		return ttlCall("", "", op.TTL.ID, op.TTL.Keys)
	case "leases":
		return leasesCall("(as a set)", true)
	case "keepalive":
		return keepAliveCall("", "", op.KeepAlive.ID)
	}
	return c
}

// exec runs one op on both systems and returns their difference. An error
// means the reference misbehaved (a harness problem).
func (r *runner) exec(op genOp) (string, error) {
	switch {
	case op.Watch != nil:
		return r.watch(op)
	case op.Cancel:
		return r.cancel(op)
	case op.Compact != nil:
		// Let every watch catch up first, so that whether the compaction
		// overtakes a replaying watch does not depend on timing.
		if d, err := r.syncAll(); d != "" || err != nil {
			return d, err
		}
	}
	c := r.call(op)
	ref, sut, d := r.p.exec(c)
	r.count(op, ref)
	if ref.err == nil {
		if h := headerOf(ref.resp); h != nil && h.Revision != 0 {
			r.m.rev = h.Revision
		}
		if op.Compact != nil {
			r.m.compactRev = op.Compact.Revision
		}
	}
	if d != "" {
		return r.p.report(c, d, ref, sut), nil
	}
	return "", nil
}

// count records an outcome of the reference in r.stats.
func (r *runner) count(op genOp, o outcome) {
	k, _ := op.kind()
	switch {
	case o.err != nil:
		msg := errString(o.err)
		if i := strings.Index(msg, "desc="); i >= 0 {
			msg = msg[i+len("desc="):]
		}
		k += " error " + msg
	case op.Txn != nil:
		k += fmt.Sprintf(" succeeded=%v", o.resp.(*pb.TxnResponse).Succeeded)
	case op.Range != nil:
		k += fmt.Sprintf(" kvs>0=%v", len(o.resp.(*pb.RangeResponse).Kvs) > 0)
	case op.Watch != nil:
		k += fmt.Sprintf(" canceled=%v", o.resp.(*pb.WatchResponse).Canceled)
	}
	r.stats[k]++
}

func (r *runner) summary() string {
	keys := make([]string, 0, len(r.stats))
	for k := range r.stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %5d  %s", r.stats[k], k)
	}
	return b.String()
}

// headerOf returns a response's header, if it has one.
func headerOf(m proto.Message) *pb.ResponseHeader {
	if h, ok := m.(interface{ GetHeader() *pb.ResponseHeader }); ok {
		return h.GetHeader()
	}
	return nil
}

func (r *runner) watch(op genOp) (string, error) {
	if op.Watch.StartRevision > r.m.rev {
		// Only in shrunk sequences: a future watch would block progress
		// notifications; skip it.
		return "", nil
	}
	wp := r.streams[op.Stream%len(r.streams)]
	c := call{desc: fmt.Sprintf("watch #%d create on stream %d", op.Label, op.Stream), req: op.Watch}
	var ref, sut outcome
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); resp, err := wp.ref.create(op.Watch); ref = outcome{resp, err} }()
	go func() { defer wg.Done(); resp, err := wp.sut.create(op.Watch); sut = outcome{resp, err} }()
	wg.Wait()
	if ref.err != nil {
		return "", ref.err
	}
	r.count(op, ref)
	d := r.p.diff(c, ref, sut)
	if d != "" {
		return r.p.report(c, d, ref, sut), nil
	}
	rr := ref.resp.(*pb.WatchResponse)
	if rr.Canceled {
		return "", nil
	}
	ws := &watchState{stream: op.Stream % len(r.streams), refID: rr.WatchId, sutID: sut.resp.(*pb.WatchResponse).WatchId, active: true}
	r.watches[op.Label] = ws
	r.m.live = append(r.m.live, op.Label)
	if s := op.Watch.StartRevision; s > 0 && s < r.m.compactRev {
		// Compacted start: wait for the notice, then cancel (etcd keeps a
		// compacted watcher until then, which blocks progress requests).
		wait := func(w *watchStream, id int64) error {
			ctx, cancel := context.WithTimeout(context.Background(), quietTimeout)
			defer cancel()
			_, err := w.waitFor(ctx, 0, func(x *pb.WatchResponse) bool { return x.WatchId == id && x.CompactRevision != 0 })
			return err
		}
		if err := wait(wp.ref, ws.refID); err != nil {
			return "", fmt.Errorf("no compaction notice: %v", err)
		}
		if err := wait(wp.sut, ws.sutID); err != nil {
			return fmt.Sprintf("%s: no compaction notice for watch #%d %s from start revision %d (compacted at %d); etcd sent one",
				r.p.sut.name, op.Label, oneLine(op.Watch), s, r.m.compactRev), nil
		}
		// The compacted watch delivers nothing more: no sync needed (nor
		// possible, see above).
		return r.cancelNow(genOp{Cancel: true, Label: op.Label}, false)
	}
	return "", nil
}

func (r *runner) cancel(op genOp) (string, error) {
	return r.cancelNow(op, true)
}

func (r *runner) cancelNow(op genOp, syncFirst bool) (string, error) {
	ws := r.watches[op.Label]
	if ws == nil || !ws.active {
		return "", nil
	}
	ws.active = false
	for i, l := range r.m.live {
		if l == op.Label {
			r.m.live = append(r.m.live[:i:i], r.m.live[i+1:]...)
			break
		}
	}
	wp := r.streams[ws.stream]
	// Deliver everything before canceling: events still in flight at the
	// cancel would be dropped or not depending on timing.
	if syncFirst {
		if d, err := r.sync(wp); d != "" || err != nil {
			return d, err
		}
	}
	c := call{desc: fmt.Sprintf("watch #%d cancel", op.Label), req: &pb.WatchCancelRequest{WatchId: ws.refID}}
	var ref, sut outcome
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); resp, err := wp.ref.cancelWatch(ws.refID); ref = outcome{resp, err} }()
	go func() { defer wg.Done(); resp, err := wp.sut.cancelWatch(ws.sutID); sut = outcome{resp, err} }()
	wg.Wait()
	if ref.err != nil {
		return "", ref.err
	}
	if d := r.p.diff(c, ref, sut); d != "" {
		return r.p.report(c, d, ref, sut), nil
	}
	return "", nil
}

// sync waits until both streams of wp delivered everything up to the
// current revision.
func (r *runner) sync(wp *watchPair) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var errs [2]error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = wp.ref.sync(ctx, r.m.rev) }()
	go func() { defer wg.Done(); errs[1] = wp.sut.sync(ctx, r.m.rev) }()
	wg.Wait()
	if errs[0] != nil {
		return "", fmt.Errorf("reference watch sync: %v", errs[0])
	}
	if errs[1] != nil {
		return fmt.Sprintf("%s: watch progress request at revision %d not answered: %v (etcd answered)", r.p.sut.name, r.m.rev, errs[1]), nil
	}
	return "", nil
}

func (r *runner) syncAll() (string, error) {
	for _, wp := range r.streams {
		if d, err := r.sync(wp); d != "" || err != nil {
			return d, err
		}
	}
	return "", nil
}

// finish syncs every stream and compares everything the watches delivered.
func (r *runner) finish() (string, error) {
	if d, err := r.syncAll(); d != "" || err != nil {
		return d, err
	}
	for i, wp := range r.streams {
		rf, sf := r.p.flatten(r.p.ref, wp.ref.snapshot()), r.p.flatten(r.p.sut, wp.sut.snapshot())
		if d := diffFlat(rf, sf); d != "" {
			return fmt.Sprintf("watch stream %d delivered different responses\n  %s:\n%s  %s:\n%s  diff (-%s +%s):\n%s",
				i, r.p.ref.name, rf, r.p.sut.name, sf, r.p.ref.name, r.p.sut.name, indent(d, "    ")), nil
		}
	}
	return "", nil
}

// shrunk is the result of shrinking.
type shrunk struct {
	ops  []genOp
	fail *failure
}

// shrink reduces ops (whose last op fails) by delta debugging: it removes
// chunks of operations, halving the chunk size when no chunk can go, and
// keeps any smaller sequence that still shows a difference (on fresh
// servers), until no single operation can be removed or the budget is
// spent.
func shrink(t *testing.T, cfg runConfig, ops []genOp, budget time.Duration) (shrunk, int) {
	deadline := time.Now().Add(budget)
	runs := 0
	test := func(cand []genOp) *failure {
		runs++
		f, err := runScratch(t, cfg, cand)
		if err != nil {
			// The reference broke on a sequence the generator would not
			// produce: not a reproduction.
			t.Logf("shrink run %d: %v", runs, err)
			return nil
		}
		return f
	}
	best := shrunk{ops: ops}
	f := test(ops)
	if f == nil {
		t.Logf("the failing sequence did not fail again on fresh servers (timing-dependent difference?)")
		return best, runs
	}
	best = shrunk{ops: ops[:f.step+1], fail: f}
	n := 2
	for len(best.ops) >= 2 && time.Now().Before(deadline) {
		chunk := (len(best.ops) + n - 1) / n
		reduced := false
		for start := 0; start < len(best.ops) && time.Now().Before(deadline); start += chunk {
			cand := append(append([]genOp(nil), best.ops[:start]...), best.ops[min(start+chunk, len(best.ops)):]...)
			if len(cand) == 0 {
				continue
			}
			if f := test(cand); f != nil {
				best = shrunk{ops: cand[:f.step+1], fail: f}
				n = max(n-1, 2)
				reduced = true
				break
			}
		}
		if !reduced {
			if chunk == 1 {
				break
			}
			n = min(n*2, len(best.ops))
		}
	}
	// Then simplify the remaining requests field by field, and try
	// removing operations once more.
	for changed := true; changed && time.Now().Before(deadline); {
		changed = false
		for i := 0; i < len(best.ops) && time.Now().Before(deadline); i++ {
			_, req := best.ops[i].kind()
			if req == nil {
				continue
			}
			for _, v := range simplerVariants(req) {
				if !time.Now().Before(deadline) {
					break
				}
				cand := append([]genOp(nil), best.ops...)
				cand[i] = best.ops[i].with(v)
				if f := test(cand); f != nil {
					best = shrunk{ops: cand[:f.step+1], fail: f}
					changed = true
					break
				}
			}
		}
		for i := 0; i < len(best.ops) && len(best.ops) > 1 && time.Now().Before(deadline); i++ {
			cand := append(append([]genOp(nil), best.ops[:i]...), best.ops[i+1:]...)
			if f := test(cand); f != nil {
				best = shrunk{ops: cand[:f.step+1], fail: f}
				changed = true
				i--
			}
		}
	}
	return best, runs
}

// with returns o with its request replaced by req (of the same type).
func (o genOp) with(req proto.Message) genOp {
	switch r := req.(type) {
	case *pb.PutRequest:
		o.Put = r
	case *pb.DeleteRangeRequest:
		o.Delete = r
	case *pb.RangeRequest:
		o.Range = r
	case *pb.TxnRequest:
		o.Txn = r
	case *pb.CompactionRequest:
		o.Compact = r
	case *pb.LeaseGrantRequest:
		o.Grant = r
	case *pb.LeaseRevokeRequest:
		o.Revoke = r
	case *pb.LeaseTimeToLiveRequest:
		o.TTL = r
	case *pb.LeaseLeasesRequest:
		o.Leases = r
	case *pb.LeaseKeepAliveRequest:
		o.KeepAlive = r
	case *pb.WatchCreateRequest:
		o.Watch = r
	}
	return o
}

// simplerVariants returns copies of m that are one step simpler: one field
// cleared (keys are kept), one list element removed, or one nested message
// simplified the same way.
func simplerVariants(m proto.Message) []proto.Message {
	var out []proto.Message
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() == "key" {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				c := proto.Clone(m)
				nl := c.ProtoReflect().NewField(fd).List()
				for j := 0; j < l.Len(); j++ {
					if j != i {
						nl.Append(c.ProtoReflect().Get(fd).List().Get(j))
					}
				}
				c.ProtoReflect().Set(fd, protoreflect.ValueOfList(nl))
				out = append(out, c)
			}
			if fd.Message() != nil {
				for i := 0; i < l.Len(); i++ {
					for _, sub := range simplerVariants(l.Get(i).Message().Interface()) {
						c := proto.Clone(m)
						c.ProtoReflect().Mutable(fd).List().Set(i, protoreflect.ValueOfMessage(sub.ProtoReflect()))
						out = append(out, c)
					}
				}
			}
		case fd.Message() != nil && !fd.IsMap():
			if fd.ContainingOneof() == nil {
				c := proto.Clone(m)
				c.ProtoReflect().Clear(fd)
				out = append(out, c)
			}
			for _, sub := range simplerVariants(v.Message().Interface()) {
				c := proto.Clone(m)
				c.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(sub.ProtoReflect()))
				out = append(out, c)
			}
		default:
			c := proto.Clone(m)
			c.ProtoReflect().Clear(fd)
			out = append(out, c)
		}
		return true
	})
	return out
}

// runScratch runs a fixed sequence on fresh servers outside the testing
// framework's failure accounting: a run that breaks the reference returns an
// error instead of failing the test.
func runScratch(t *testing.T, cfg runConfig, ops []genOp) (f *failure, err error) {
	st := &scratchTB{TB: t}
	defer st.cleanup()
	defer func() {
		if v := recover(); v != nil {
			if v != errScratchFatal {
				panic(v)
			}
			err = fmt.Errorf("%s", strings.Join(st.errs, "; "))
		}
	}()
	_, f = runSequence(st, cfg, &replay{ops: ops}, len(ops))
	if len(st.errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(st.errs, "; "))
	}
	return f, nil
}

var errScratchFatal = fmt.Errorf("scratch run failed")

// scratchTB is a testing.TB for throw-away runs: it records failures instead
// of failing the test, and runs its own cleanups.
type scratchTB struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (s *scratchTB) Helper() {}

func (s *scratchTB) Logf(string, ...any) {}

func (s *scratchTB) Errorf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

func (s *scratchTB) Fatalf(format string, args ...any) {
	s.Errorf(format, args...)
	panic(errScratchFatal)
}

func (s *scratchTB) Fatal(args ...any) { s.Fatalf("%s", fmt.Sprint(args...)) }

func (s *scratchTB) Cleanup(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, fn)
}

func (s *scratchTB) TempDir() string {
	dir, err := os.MkdirTemp("", "herd-conformance-")
	if err != nil {
		s.Fatalf("temp dir: %v", err)
	}
	s.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (s *scratchTB) cleanup() {
	s.mu.Lock()
	fns := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}
