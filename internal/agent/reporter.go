package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/herd-project/herd/api"
)

// requestTimeout bounds one request to the API server.
const requestTimeout = 10 * time.Second

// reportTarget learns the fate of its reports.
type reportTarget interface {
	// reportAcked: the server recorded status.
	reportAcked(status api.AllocStatus)
	// reportRefused: the server no longer has this incarnation on this
	// node (409: replaced; 404: deleted).
	reportRefused(err error)
}

// statusReport is one allocation status to send.
type statusReport struct {
	namespace, name, uid string
	status               api.AllocStatus
	target               reportTarget
}

// reportWorkers is how many reports are in flight at once: reports of
// different allocations are independent, and sending them one after another
// would make starting 100 allocations wait for 100 round trips.
const reportWorkers = 8

// reporter sends allocation status reports to the API server. Reports of
// one allocation coalesce: only the latest pending status is sent, and at
// most one report per allocation is in flight, so they arrive in order.
// Failed sends are retried with backoff on the injected clock.
type reporter struct {
	srv   Server
	node  string
	clock clockwork.Clock
	log   *slog.Logger

	mu       sync.Mutex
	pending  map[string]statusReport // by uid
	order    []string                // uids, oldest first
	inflight map[string]bool         // uids being sent
	kick     chan struct{}
}

func newReporter(srv Server, node string, clock clockwork.Clock, log *slog.Logger) *reporter {
	return &reporter{
		srv: srv, node: node, clock: clock, log: log,
		pending:  map[string]statusReport{},
		inflight: map[string]bool{},
		kick:     make(chan struct{}, 1),
	}
}

// submit queues r, replacing a pending report of the same incarnation.
func (rp *reporter) submit(r statusReport) {
	rp.mu.Lock()
	if _, queued := rp.pending[r.uid]; !queued {
		rp.order = append(rp.order, r.uid)
	}
	rp.pending[r.uid] = r
	rp.mu.Unlock()
	rp.wake()
}

func (rp *reporter) wake() {
	select {
	case rp.kick <- struct{}{}:
	default:
	}
}

// next takes the oldest pending report whose allocation has no report in
// flight, and marks it in flight; more says whether others are sendable.
func (rp *reporter) next() (r statusReport, ok, more bool) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	for i, uid := range rp.order {
		if rp.inflight[uid] {
			continue
		}
		rp.order = slices.Delete(rp.order, i, i+1)
		r = rp.pending[uid]
		delete(rp.pending, uid)
		rp.inflight[uid] = true
		return r, true, len(rp.order) > 0
	}
	return statusReport{}, false, false
}

// done ends the flight of r. A report that could not be sent is put back,
// unless a newer one of the same incarnation was submitted meanwhile.
func (rp *reporter) done(r statusReport, retry bool) {
	rp.mu.Lock()
	delete(rp.inflight, r.uid)
	_, newer := rp.pending[r.uid]
	if retry && !newer {
		rp.pending[r.uid] = r
		rp.order = slices.Insert(rp.order, 0, r.uid)
	}
	rp.mu.Unlock()
	if newer {
		rp.wake()
	}
}

// run sends reports until ctx ends.
func (rp *reporter) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range reportWorkers {
		wg.Go(func() { rp.work(ctx) })
	}
	wg.Wait()
}

func (rp *reporter) work(ctx context.Context) {
	bo := backoff{min: 250 * time.Millisecond, max: 10 * time.Second}
	for {
		r, ok, more := rp.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-rp.kick:
			}
			continue
		}
		if more {
			rp.wake() // let another worker take the next one
		}
		retry := rp.send(ctx, r)
		rp.done(r, retry)
		if !retry {
			bo.reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-rp.clock.After(bo.next()):
		}
	}
}

// flush sends every pending report once; used at shutdown.
func (rp *reporter) flush(ctx context.Context) {
	for ctx.Err() == nil {
		r, ok, _ := rp.next()
		if !ok {
			return
		}
		rp.send(ctx, r)
		rp.done(r, false)
	}
}

// send sends one report and tells its target the outcome. It returns
// whether the report should be retried.
func (rp *reporter) send(ctx context.Context, r statusReport) (retry bool) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	r.status.UpdatedAt = rp.clock.Now()
	_, err := rp.srv.ReportAllocStatus(rctx, r.namespace, r.name, api.AllocStatusReport{UID: r.uid, Node: rp.node, Status: r.status})
	var apiErr *api.Error
	switch {
	case err == nil:
		r.target.reportAcked(r.status)
		return false
	case api.IsConflict(err) || api.IsNotFound(err):
		rp.log.Info("allocation is no longer this node's; its tasks will stop",
			"alloc", r.namespace+"/"+r.name, "uid", r.uid, "reason", err)
		r.target.reportRefused(err)
		return false
	case errors.As(err, &apiErr) && apiErr.Status/100 == 4 &&
		apiErr.Status != http.StatusRequestTimeout && apiErr.Status != http.StatusTooManyRequests:
		rp.log.Error("API server refused an allocation status report; dropping it",
			"alloc", r.namespace+"/"+r.name, "uid", r.uid, "err", err)
		return false
	}
	if ctx.Err() == nil {
		rp.log.Warn("reporting allocation status failed; will retry",
			"alloc", r.namespace+"/"+r.name, "uid", r.uid, "err", err)
	}
	return true
}

// backoff doubles a wait from min to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
