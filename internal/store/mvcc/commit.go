package mvcc

import (
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// record is one revision to write to the key bucket.
type record struct {
	rev       Revision
	tombstone bool
	kv        *mvccpb.KeyValue
}

type revEvents struct {
	rev    int64
	events []*mvccpb.Event
}

// commitBatch gathers the write transactions that one bbolt commit makes
// durable together.
type commitBatch struct {
	records   []record
	leasePuts []Lease
	leaseDels []int64
	events    []revEvents
	lastRev   int64
	txns      int
	done      chan struct{}
	err       error
}

func newBatch() *commitBatch { return &commitBatch{done: make(chan struct{})} }

func (b *commitBatch) empty() bool {
	return len(b.records) == 0 && len(b.leasePuts) == 0 && len(b.leaseDels) == 0
}

// committer is the group commit: writers append to the open batch and wait on
// its done channel; one goroutine commits whole batches. While it fsyncs one
// batch the next one fills, so the cost of an fsync is shared by every writer
// that arrived meanwhile.
type committer struct {
	s       *Store
	mu      sync.Mutex
	batch   *commitBatch
	wake    chan struct{}
	quit    chan struct{}
	stopped chan struct{}
	err     error // sticky disk failure
	diskMu  sync.Mutex
	// lastTxns is the size of the previous batch: the writers it released
	// are probably about to write again, so the next commit lingers briefly
	// for them rather than fsyncing a batch of one.
	lastTxns int
}

// maxLinger bounds how long a commit waits for writers to come back. It is
// small next to an fsync, which is what a batch of one would cost each of
// them.
const maxLinger = 500 * time.Microsecond

func (c *committer) start(s *Store) {
	c.s = s
	c.batch = newBatch()
	c.wake = make(chan struct{}, 1)
	c.quit = make(chan struct{})
	c.stopped = make(chan struct{})
	go c.run()
}

// add appends a write transaction's changes and returns the batch to wait on.
func (c *committer) add(f func(b *commitBatch)) *commitBatch {
	c.mu.Lock()
	b := c.batch
	f(b)
	b.txns++
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return b
}

func (c *committer) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *committer) run() {
	defer close(c.stopped)
	for {
		select {
		case <-c.wake:
		case <-c.quit:
			c.commitOpen()
			return
		}
		c.linger()
		c.commitOpen()
	}
}

// linger waits until the open batch is as large as the previous one, or
// maxLinger has passed, or the store is closing.
func (c *committer) linger() {
	c.mu.Lock()
	target, n := c.lastTxns, c.batch.txns
	c.mu.Unlock()
	if target <= 1 || n >= target {
		return
	}
	timer := time.NewTimer(maxLinger)
	defer timer.Stop()
	for n < target {
		select {
		case <-c.wake:
		case <-timer.C:
			return
		case <-c.quit:
			return
		}
		c.mu.Lock()
		n = c.batch.txns
		c.mu.Unlock()
	}
}

// commitOpen commits the open batch, if it has anything.
func (c *committer) commitOpen() {
	c.mu.Lock()
	b := c.batch
	if b.empty() {
		c.mu.Unlock()
		return
	}
	c.batch = newBatch()
	c.lastTxns = b.txns
	failed := c.err
	c.mu.Unlock()

	if failed != nil {
		b.err = failed
		close(b.done)
		return
	}
	c.diskMu.Lock()
	err := c.s.db.Update(func(tx *bolt.Tx) error {
		if err := writeBatch(tx, b); err != nil {
			return err
		}
		c.s.size.Store(tx.Size())
		return nil
	})
	c.diskMu.Unlock()
	if err != nil {
		err = fmt.Errorf("mvcc: commit: %w", err)
		c.s.lg.Error("commit failed; the store refuses further writes", "err", err)
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		b.err = err
		close(b.done)
		return
	}
	s := c.s
	if b.lastRev > 0 {
		s.committedRev.Store(b.lastRev)
	}
	s.pendingMu.Lock()
	for _, r := range b.records {
		delete(s.pending, r.rev)
	}
	s.pendingMu.Unlock()
	s.notify(b)
	close(b.done)
}

func writeBatch(tx *bolt.Tx, b *commitBatch) error {
	kb := tx.Bucket(bucketKey)
	kb.FillPercent = 0.9 // keys are appended in order
	for _, r := range b.records {
		v, err := proto.Marshal(r.kv)
		if err != nil {
			return err
		}
		if err := kb.Put(revToBytes(r.rev, r.tombstone), v); err != nil {
			return err
		}
	}
	lb := tx.Bucket(bucketLease)
	for _, l := range b.leasePuts {
		if err := lb.Put(int64Bytes(l.ID), int64Bytes(l.TTL)); err != nil {
			return err
		}
	}
	for _, id := range b.leaseDels {
		if err := lb.Delete(int64Bytes(id)); err != nil {
			return err
		}
	}
	if b.lastRev > 0 {
		return tx.Bucket(bucketMeta).Put(metaRev, int64Bytes(b.lastRev))
	}
	return nil
}

// stop commits what is open and stops the goroutine.
func (c *committer) stop() {
	close(c.quit)
	<-c.stopped
}

// flush waits until everything added so far is committed.
func (c *committer) flush() {
	c.mu.Lock()
	b := c.batch
	empty := b.empty()
	c.mu.Unlock()
	if empty {
		// The batch in flight, if any, finishes before diskMu is free.
		c.diskMu.Lock()
		c.diskMu.Unlock()
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-b.done
}
