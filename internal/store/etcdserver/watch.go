package etcdserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herd-project/herd/internal/store/mvcc"
	"github.com/herd-project/herd/internal/store/watch"
)

const (
	// minWatchProgressInterval is etcd's floor for progress_notify.
	minWatchProgressInterval = 100 * time.Millisecond
	// ctrlStreamBufLen is how many control responses (created, canceled)
	// wait for the send loop before the receive loop blocks, as in etcd.
	ctrlStreamBufLen = 16
	// invalidWatchID is etcd's watch ID of failed creations and of progress
	// responses for a whole stream.
	invalidWatchID = -1
)

// Cancel reasons of failed creations, worded as etcd's mvcc errors because
// clients see them verbatim.
const (
	reasonEmptyRange  = "mvcc: watcher range is empty"
	reasonDuplicateID = "mvcc: duplicate watch ID provided on the WatchStream"
)

// watchServer is etcd's Watch service over the store's watch hub.
type watchServer struct {
	pb.UnimplementedWatchServer

	s        *Server
	hub      *watch.Hub
	lg       *slog.Logger
	clock    clockwork.Clock
	interval time.Duration // progress_notify period before jitter
	maxBytes int           // responses above it are fragmented on request
}

// newWatchServer builds the Watch service and registers its hub as the
// store's notifier, so it must run before the store's first write. When
// s.stopc closes, the hub closes and every Watch stream returns etcd's
// "server stopped", so that a graceful stop does not wait for watchers.
func newWatchServer(s *Server) *watchServer {
	lg := s.cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	clock := s.cfg.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	hub := watch.New(s.store, watch.Options{Clock: clock, Logger: lg})
	s.store.SetNotifier(hub)

	interval := s.cfg.WatchProgressNotifyInterval
	if interval <= 0 {
		interval = DefaultWatchProgressNotifyInterval
	}
	if interval < minWatchProgressInterval {
		lg.Warn("adjusting watch progress notify interval to the minimum", "interval", minWatchProgressInterval)
		interval = minWatchProgressInterval
	}
	maxReq := s.cfg.MaxRequestBytes
	if maxReq <= 0 {
		maxReq = DefaultMaxRequestBytes
	}
	ws := &watchServer{
		s:        s,
		hub:      hub,
		lg:       lg,
		clock:    clock,
		interval: interval,
		maxBytes: maxReq + grpcOverheadBytes,
	}
	if s.stopc != nil {
		go func() {
			<-s.stopc
			ws.close()
		}()
	}
	return ws
}

// close ends every Watch stream (with etcd's "server stopped") and stops the
// hub; Notify does nothing afterwards. It may be called more than once.
func (ws *watchServer) close() { ws.hub.Close() }

// progressInterval adds etcd's jitter of up to a tenth, so that watchers
// created together do not all get their notifications at once.
func (ws *watchServer) progressInterval() time.Duration {
	return ws.interval + rand.N(ws.interval/10)
}

// serverStream is one Watch call: recvLoop turns requests into hub calls
// and control responses; sendLoop writes control responses and the hub
// stream's responses to the client, one goroutine so that sends are
// serialised.
type serverStream struct {
	ws   *watchServer
	gs   pb.Watch_WatchServer
	hs   *watch.Stream
	ctrl chan *pb.WatchResponse

	// mu guards the per-watcher options below.
	mu sync.Mutex
	// progress holds the watchers that asked for progress_notify; false
	// means events were sent since the last tick.
	progress map[watch.WatchID]bool
	prevKV   map[watch.WatchID]bool
	fragment map[watch.WatchID]bool

	closec chan struct{}
	wg     sync.WaitGroup
}

// Watch serves one bidirectional Watch stream.
func (ws *watchServer) Watch(gs pb.Watch_WatchServer) error {
	ss := &serverStream{
		ws:       ws,
		gs:       gs,
		hs:       ws.hub.NewStream(),
		ctrl:     make(chan *pb.WatchResponse, ctrlStreamBufLen),
		progress: make(map[watch.WatchID]bool),
		prevKV:   make(map[watch.WatchID]bool),
		fragment: make(map[watch.WatchID]bool),
		closec:   make(chan struct{}),
	}
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		ss.sendLoop()
	}()

	// recvLoop is not waited for: Recv may block until the handler returns.
	errc := make(chan error, 1)
	go func() {
		if err := ss.recvLoop(); err != nil {
			ss.logStreamErr("receive", err)
			errc <- err
		}
	}()

	var err error
	select {
	case err = <-errc:
		if errors.Is(err, context.Canceled) {
			err = rpctypes.ErrGRPCWatchCanceled
		}
		close(ss.ctrl)
	case <-gs.Context().Done():
		err = gs.Context().Err()
		if errors.Is(err, context.Canceled) {
			err = rpctypes.ErrGRPCWatchCanceled
		}
	case <-ss.hs.Done():
		err = rpctypes.ErrGRPCStopped
	}
	ss.close()
	return err
}

func (ss *serverStream) close() {
	ss.hs.Close()
	close(ss.closec)
	ss.wg.Wait()
}

// header is the header of control responses: the store's revision.
func (ss *serverStream) header() *pb.ResponseHeader {
	return ss.ws.s.header(ss.ws.s.store.Rev())
}

// sendCtrl queues a control response; false if the stream is closing.
func (ss *serverStream) sendCtrl(wr *pb.WatchResponse) bool {
	select {
	case ss.ctrl <- wr:
		return true
	case <-ss.closec:
		return false
	}
}

func (ss *serverStream) recvLoop() error {
	for {
		req, err := ss.gs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch uv := req.GetRequestUnion().(type) {
		case *pb.WatchRequest_CreateRequest:
			if uv.CreateRequest != nil && !ss.create(uv.CreateRequest) {
				return nil
			}
		case *pb.WatchRequest_CancelRequest:
			if uv.CancelRequest != nil && !ss.cancel(watch.WatchID(uv.CancelRequest.GetWatchId())) {
				return nil
			}
		case *pb.WatchRequest_ProgressRequest:
			if uv.ProgressRequest != nil {
				ss.hs.RequestProgressAll()
			}
		default:
			// An unknown request does not end the stream, as in etcd.
			ss.ws.lg.Info("invalid watch request type received", "type", uv)
		}
	}
}

// create adds a watcher and queues its created response. It reports false
// if the stream is closing.
func (ss *serverStream) create(creq *pb.WatchCreateRequest) bool {
	if creq.GetStartRevision() < 0 {
		return ss.sendCtrl(&pb.WatchResponse{
			Header:       ss.header(),
			WatchId:      invalidWatchID,
			Created:      true,
			Canceled:     true,
			CancelReason: rpctypes.ErrCompacted.Error(),
		})
	}
	var filters []watch.Filter
	for _, f := range creq.GetFilters() {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			filters = append(filters, filterNoPut)
		case pb.WatchCreateRequest_NODELETE:
			filters = append(filters, filterNoDelete)
		}
	}
	// The options are read when responses are sent, which is only after
	// the created response, so they are in place for the first event.
	id, err := ss.hs.Watch(watch.WatchID(creq.GetWatchId()), creq.GetKey(), creq.GetRangeEnd(),
		creq.GetStartRevision(), filters...)
	wr := &pb.WatchResponse{Header: ss.header(), WatchId: int64(id), Created: true}
	if err != nil {
		wr.WatchId = invalidWatchID
		wr.Canceled = true
		wr.CancelReason = cancelReason(err)
	} else {
		ss.mu.Lock()
		if creq.GetProgressNotify() {
			ss.progress[id] = true
		}
		if creq.GetPrevKv() {
			ss.prevKV[id] = true
		}
		if creq.GetFragment() {
			ss.fragment[id] = true
		}
		ss.mu.Unlock()
	}
	return ss.sendCtrl(wr)
}

// cancel removes a watcher and queues its canceled response; an unknown
// ID gets no answer, as in etcd. It reports false if the stream is closing.
func (ss *serverStream) cancel(id watch.WatchID) bool {
	if err := ss.hs.Cancel(id); err != nil {
		return true
	}
	ok := ss.sendCtrl(&pb.WatchResponse{Header: ss.header(), WatchId: int64(id), Canceled: true})
	ss.mu.Lock()
	delete(ss.progress, id)
	delete(ss.prevKV, id)
	delete(ss.fragment, id)
	ss.mu.Unlock()
	return ok
}

func cancelReason(err error) string {
	switch {
	case errors.Is(err, watch.ErrDuplicateID):
		return reasonDuplicateID
	case errors.Is(err, watch.ErrEmptyRange), errors.Is(err, watch.ErrClosed):
		// etcd answers a watch on a closing stream with the same error.
		return reasonEmptyRange
	}
	return err.Error()
}

func filterNoPut(ev *mvccpb.Event) bool    { return ev.Type == mvccpb.PUT }
func filterNoDelete(ev *mvccpb.Event) bool { return ev.Type == mvccpb.DELETE }

func (ss *serverStream) sendLoop() {
	// Watchers whose created response has been sent; responses for the
	// others wait in pending so that a client never sees events first.
	ids := make(map[watch.WatchID]struct{})
	pending := make(map[watch.WatchID][]watch.Response)

	ticker := ss.ws.clock.NewTicker(ss.ws.progressInterval())
	defer ticker.Stop()

	for {
		select {
		case <-ss.hs.Ready():
			for _, r := range ss.hs.Take() {
				if _, ok := ids[r.WatchID]; !ok && r.WatchID != invalidWatchID {
					pending[r.WatchID] = append(pending[r.WatchID], r)
					continue
				}
				if !ss.send(r) {
					return
				}
			}

		case c, ok := <-ss.ctrl:
			if !ok {
				return
			}
			if err := ss.gs.Send(c); err != nil {
				ss.logStreamErr("send", err)
				return
			}
			id := watch.WatchID(c.WatchId)
			if c.Canceled && id != invalidWatchID {
				delete(ids, id)
				continue
			}
			if c.Created {
				ids[id] = struct{}{}
				for _, r := range pending[id] {
					if !ss.send(r) {
						return
					}
				}
				delete(pending, id)
			}

		case <-ticker.Chan():
			// A watcher gets a notification if nothing was sent to it for
			// a whole period, and only if it is synced (the hub checks).
			ss.mu.Lock()
			for id, idle := range ss.progress {
				if idle {
					ss.hs.RequestProgress(id)
				}
				ss.progress[id] = true
			}
			ss.mu.Unlock()

		case <-ss.closec:
			return
		}
	}
}

// send writes one hub response; false if the stream is broken.
func (ss *serverStream) send(r watch.Response) bool {
	ss.mu.Lock()
	prevKV, fragment := ss.prevKV[r.WatchID], ss.fragment[r.WatchID]
	ss.mu.Unlock()

	events := r.Events
	if prevKV && len(events) > 0 {
		events = ss.ws.withPrevKV(events)
	}
	wr := &pb.WatchResponse{
		// A compaction notice has revision 0, as in etcd.
		Header:          ss.ws.s.header(r.Revision),
		WatchId:         int64(r.WatchID),
		Events:          events,
		CompactRevision: r.CompactRevision,
		Canceled:        r.CompactRevision != 0,
	}
	var err error
	if fragment {
		err = sendFragments(wr, ss.ws.maxBytes, ss.gs.Send)
	} else {
		err = ss.gs.Send(wr)
	}
	if err != nil {
		ss.logStreamErr("send", err)
		return false
	}
	if len(events) > 0 {
		ss.mu.Lock()
		if ss.progress[r.WatchID] {
			ss.progress[r.WatchID] = false // elide the next notification
		}
		ss.mu.Unlock()
	}
	return true
}

// withPrevKV returns copies of evs (which are shared) with PrevKv set to the
// key's value before each change, if it is still there. Creations have no
// previous value.
func (ws *watchServer) withPrevKV(evs []*mvccpb.Event) []*mvccpb.Event {
	txn := ws.s.store.Read()
	defer txn.End()
	out := make([]*mvccpb.Event, len(evs))
	for i, ev := range evs {
		cp := &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
		if !isCreateEvent(ev) {
			res, err := txn.Range(ev.Kv.Key, nil, mvcc.RangeOptions{Rev: ev.Kv.ModRevision - 1})
			if err == nil && len(res.KVs) > 0 {
				cp.PrevKv = res.KVs[0]
			}
		}
		out[i] = cp
	}
	return out
}

func isCreateEvent(ev *mvccpb.Event) bool {
	return ev.Type == mvccpb.PUT && ev.Kv.CreateRevision == ev.Kv.ModRevision
}

// sendFragments splits wr, if it is too large and has more than one event,
// into responses of at most maxBytes each (but at least one event), all but
// the last marked Fragment. This is etcd's algorithm, so that the pieces
// are the same.
func sendFragments(wr *pb.WatchResponse, maxBytes int, send func(*pb.WatchResponse) error) error {
	if proto.Size(wr) < maxBytes || len(wr.Events) < 2 {
		return send(wr)
	}
	idx := 0
	for {
		// A fresh message each time: send may keep a reference.
		cur := &pb.WatchResponse{
			Header:          wr.Header,
			WatchId:         wr.WatchId,
			Created:         wr.Created,
			Canceled:        wr.Canceled,
			CompactRevision: wr.CompactRevision,
			CancelReason:    wr.CancelReason,
			Fragment:        true,
			Events:          make([]*mvccpb.Event, 0),
		}
		for _, ev := range wr.Events[idx:] {
			cur.Events = append(cur.Events, ev)
			if len(cur.Events) > 1 && proto.Size(cur) >= maxBytes {
				cur.Events = cur.Events[:len(cur.Events)-1]
				break
			}
			idx++
		}
		if idx == len(wr.Events) {
			cur.Fragment = false
		}
		if err := send(cur); err != nil {
			return err
		}
		if !cur.Fragment {
			return nil
		}
	}
}

// logStreamErr logs a failed Recv or Send quietly when the client went away.
func (ss *serverStream) logStreamErr(op string, err error) {
	if isClientGone(ss.gs.Context().Err(), err) {
		ss.ws.lg.Debug("watch stream ended", "op", op, "err", err)
		return
	}
	ss.ws.lg.Warn("watch stream failed", "op", op, "err", err)
}

func isClientGone(ctxErr, err error) bool {
	if ctxErr != nil {
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded:
		return true
	case codes.Unavailable:
		msg := st.Message()
		return msg == "client disconnected" ||
			(strings.HasPrefix(msg, "stream error: ") && strings.HasSuffix(msg, "; CANCEL"))
	}
	return false
}
