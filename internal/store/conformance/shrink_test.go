package conformance

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

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
