// Package benchkv is a load generator for etcd v3 KV servers (herd store or
// etcd itself), equivalent to the put and range workloads of etcd's
// benchmark tool (tools/benchmark in the etcd repository).
//
// A run opens Conns gRPC connections (one etcd client each) and starts
// Clients workers; worker i sends its requests over connection i mod Conns,
// one request at a time, until Total requests have been sent. Every request
// is timed on its own and the exact latencies are kept, so percentiles are
// exact. Before the clock starts each connection does one serializable read,
// so connection setup is not part of the figures.
package benchkv

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Consistency of a range request, as etcd's benchmark spells it.
type Consistency string

const (
	// Linearizable reads see every write acknowledged before they started.
	Linearizable Consistency = "l"
	// Serializable reads are served from the member's local state.
	Serializable Consistency = "s"
)

// DefaultRangeKey is the key Range reads when asked to write its own key.
const DefaultRangeKey = "herd-bench/range"

// warmupKey is read once per connection before a run; it need not exist.
const warmupKey = "herd-bench/warmup"

// Defaults for zero-valued Options fields.
const (
	DefaultDialTimeout = 5 * time.Second
)

// Options are common to all workloads.
type Options struct {
	// Endpoints are the server's client URLs or host:port pairs.
	Endpoints []string
	// Clients is the number of concurrent workers.
	Clients int
	// Conns is the number of gRPC connections the workers share round-robin.
	Conns int
	// Total is the number of requests to send.
	Total int
	// Rate caps requests per second over all workers; 0 means no cap.
	Rate int
	// RequestTimeout bounds each request; 0 means no bound. A request that
	// times out counts as an error.
	RequestTimeout time.Duration
	// DialTimeout bounds connecting and the warm-up read of each connection;
	// 0 means DefaultDialTimeout.
	DialTimeout time.Duration
}

func (o *Options) validate() error {
	switch {
	case len(o.Endpoints) == 0:
		return errors.New("no endpoints")
	case o.Clients < 1:
		return fmt.Errorf("clients must be at least 1, got %d", o.Clients)
	case o.Conns < 1:
		return fmt.Errorf("conns must be at least 1, got %d", o.Conns)
	case o.Total < 1:
		return fmt.Errorf("total must be at least 1, got %d", o.Total)
	case o.Rate < 0:
		return fmt.Errorf("rate must not be negative, got %d", o.Rate)
	case o.RequestTimeout < 0:
		return fmt.Errorf("request timeout must not be negative, got %v", o.RequestTimeout)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	return nil
}

func (o *Options) params() Params {
	return Params{
		Endpoints: o.Endpoints,
		Clients:   o.Clients,
		Conns:     o.Conns,
		Total:     o.Total,
		Rate:      o.Rate,
	}
}

// PutOptions configure a put benchmark.
type PutOptions struct {
	Options
	// KeySize is the size of every key in bytes; see Key.
	KeySize int
	// ValSize is the size of every value in bytes; all puts write the same
	// random value.
	ValSize int
	// KeySpaceSize is the number of distinct keys written.
	KeySpaceSize int64
	// SequentialKeys writes key numbers 0, 1, 2, ... (wrapping at
	// KeySpaceSize) instead of uniformly random ones.
	SequentialKeys bool
}

// RangeOptions configure a range benchmark.
type RangeOptions struct {
	Options
	// Key is the key (or, with End, the start of the range) to read.
	Key string
	// End, if set, makes each request read [Key, End).
	End string
	// WriteKey puts Key with a random value of ValSize bytes before the
	// run, so that every request reads exactly that one key-value pair.
	WriteKey bool
	// ValSize is the size of the value WriteKey writes.
	ValSize int
	// Consistency is Linearizable or Serializable.
	Consistency Consistency
}

// Put runs a put benchmark.
func Put(ctx context.Context, o PutOptions) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("put benchmark: %w", err)
	}
	if err := validateKeys(o.KeySize, o.KeySpaceSize); err != nil {
		return nil, fmt.Errorf("put benchmark: %w", err)
	}
	if o.ValSize < 0 {
		return nil, fmt.Errorf("put benchmark: value size must not be negative, got %d", o.ValSize)
	}
	val := string(randBytes(o.ValSize))
	seed := uint64(time.Now().UnixNano())
	newOp := func(worker int) func(i int64) clientv3.Op {
		g := newKeyGen(o.KeySpaceSize, o.SequentialKeys, seed+uint64(worker))
		return func(i int64) clientv3.Op {
			return clientv3.OpPut(string(Key(g.next(i), o.KeySize)), val)
		}
	}
	p := o.params()
	p.KeySize, p.ValSize, p.KeySpaceSize, p.SequentialKeys = o.KeySize, o.ValSize, o.KeySpaceSize, o.SequentialKeys
	res, err := run(ctx, o.Options, nil, newOp)
	if res != nil {
		res.Workload, res.Params = "put", p
	}
	if err != nil {
		return res, fmt.Errorf("put benchmark: %w", err)
	}
	return res, nil
}

// Range runs a range benchmark.
func Range(ctx context.Context, o RangeOptions) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("range benchmark: %w", err)
	}
	if o.Key == "" {
		return nil, errors.New("range benchmark: no key")
	}
	if o.Consistency != Linearizable && o.Consistency != Serializable {
		return nil, fmt.Errorf("range benchmark: consistency must be %q or %q, got %q", Linearizable, Serializable, o.Consistency)
	}
	if o.ValSize < 0 {
		return nil, fmt.Errorf("range benchmark: value size must not be negative, got %d", o.ValSize)
	}
	var prepare func(context.Context, *clientv3.Client) error
	if o.WriteKey {
		prepare = func(ctx context.Context, c *clientv3.Client) error {
			return writeRangeKey(ctx, c, o.Key, o.ValSize)
		}
	}
	opts := []clientv3.OpOption{}
	if o.End != "" {
		opts = append(opts, clientv3.WithRange(o.End))
	}
	if o.Consistency == Serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	op := clientv3.OpGet(o.Key, opts...)
	newOp := func(int) func(int64) clientv3.Op {
		return func(int64) clientv3.Op { return op }
	}
	p := o.params()
	p.Key, p.End, p.Consistency = o.Key, o.End, string(o.Consistency)
	if o.WriteKey {
		p.WroteKey, p.ValSize = true, o.ValSize
	}
	res, err := run(ctx, o.Options, prepare, newOp)
	if res != nil {
		res.Workload, res.Params = "range", p
	}
	if err != nil {
		return res, fmt.Errorf("range benchmark: %w", err)
	}
	return res, nil
}

// writeRangeKey puts the key a range benchmark reads and checks that it
// reads back, so a broken server cannot pass for a fast one.
func writeRangeKey(ctx context.Context, c *clientv3.Client, key string, valSize int) error {
	val := string(randBytes(valSize))
	if _, err := c.Put(ctx, key, val); err != nil {
		return fmt.Errorf("write key %q: %w", key, err)
	}
	resp, err := c.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read back key %q: %w", key, err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != val {
		return fmt.Errorf("read back key %q: got %d key-value pairs, not the value just written", key, len(resp.Kvs))
	}
	return nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return b
}

// worker is what one client goroutine records.
type worker struct {
	lats []time.Duration
	errs map[string]int
	sent int
}

// run dials, warms up, calls prepare (if not nil) on the first connection,
// and then has o.Clients workers send o.Total requests built by newOp(worker)(i).
func run(ctx context.Context, o Options, prepare func(context.Context, *clientv3.Client) error, newOp func(worker int) func(i int64) clientv3.Op) (*Result, error) {
	conns, err := dial(ctx, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	if prepare != nil {
		pctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
		err := prepare(pctx, conns[0])
		cancel()
		if err != nil {
			return nil, err
		}
	}

	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		lim     = newLimiter(o.Rate)
		workers = make([]worker, o.Clients)
		total   = int64(o.Total)
	)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func(w *worker, c *clientv3.Client, mk func(int64) clientv3.Op) {
			defer wg.Done()
			w.lats = make([]time.Duration, 0, o.Total/o.Clients+1)
			w.errs = map[string]int{}
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				if lim.wait(ctx) != nil {
					return
				}
				op := mk(i)
				rctx, cancel := ctx, context.CancelFunc(func() {})
				if o.RequestTimeout > 0 {
					rctx, cancel = context.WithTimeout(ctx, o.RequestTimeout)
				}
				st := time.Now()
				_, err := c.Do(rctx, op)
				d := time.Since(st)
				cancel()
				w.sent++
				if err != nil {
					w.errs[err.Error()]++
				} else {
					w.lats = append(w.lats, d)
				}
			}
		}(&workers[w], conns[w%len(conns)], newOp(w))
	}
	wg.Wait()
	res := newResult(time.Since(start), workers)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("interrupted after %d of %d requests: %w", res.Requests, o.Total, err)
	}
	return res, nil
}

// dial opens o.Conns clients and makes one serializable read on each, which
// both proves the endpoint serves the KV API and takes connection setup out
// of the measured time.
func dial(ctx context.Context, o Options) ([]*clientv3.Client, error) {
	conns := make([]*clientv3.Client, 0, o.Conns)
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	for range o.Conns {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   o.Endpoints,
			DialTimeout: o.DialTimeout,
			Context:     ctx,
			// The client logs retries at info level; the report counts errors.
			Logger: zap.NewNop(),
		})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("connect to %v: %w", o.Endpoints, err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		wctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
		_, err := c.Get(wctx, warmupKey, clientv3.WithSerializable())
		cancel()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("warm-up read on connection %d to %v: %w", i, o.Endpoints, err)
		}
	}
	return conns, nil
}

// limiter spaces requests at least 1/rate apart over all workers, with no
// bursts (like golang.org/x/time/rate with a burst of 1).
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func newLimiter(rate int) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{interval: time.Second / time.Duration(rate)}
}

// wait blocks until the caller's slot; a nil limiter never blocks.
func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	// A slot missed in the past is not made up for later with a burst.
	slot := l.next
	if slot.Before(now) {
		slot = now
	}
	l.next = slot.Add(l.interval)
	l.mu.Unlock()
	d := time.Until(slot)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
