package conformance

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
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
