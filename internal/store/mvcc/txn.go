package mvcc

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// ReadTxn is a read-only view at one revision.
type ReadTxn struct {
	s   *Store
	rev int64
	tx  *bolt.Tx
	err error
}

// Read starts a read-only transaction at the latest durable revision. Call End.
func (s *Store) Read() *ReadTxn {
	s.mu.RLock()
	t := &ReadTxn{s: s, rev: s.committedRev.Load()}
	// The bbolt transaction is opened after the revision is read: everything
	// up to that revision is on disk, and its snapshot stays readable even if
	// a compaction deletes history meanwhile.
	t.tx, t.err = s.db.Begin(false)
	return t
}

// Rev is the revision the transaction reads at.
func (t *ReadTxn) Rev() int64 { return t.rev }

// Range returns the keys in [key, end). An empty end means the single key;
// end == "\x00" means every key >= key.
func (t *ReadTxn) Range(key, end []byte, ro RangeOptions) (*RangeResult, error) {
	if t.err != nil {
		return nil, fmt.Errorf("mvcc: read: %w", t.err)
	}
	return t.s.rangeKeys(key, end, t.rev, ro, func(revs []Revision) ([]*mvccpb.KeyValue, error) {
		return readRevisions(t.tx, revs, nil)
	})
}

// End releases the transaction.
func (t *ReadTxn) End() {
	if t.tx != nil {
		t.tx.Rollback()
		t.tx = nil
	}
	if t.s != nil {
		t.s.mu.RUnlock()
		t.s = nil
	}
}

// rangeKeys is Range at curRev (the transaction's latest revision), with fetch
// turning revisions into key-values.
func (s *Store) rangeKeys(key, end []byte, curRev int64, ro RangeOptions,
	fetch func([]Revision) ([]*mvccpb.KeyValue, error)) (*RangeResult, error) {
	rev := ro.Rev
	if rev > curRev {
		return &RangeResult{Rev: curRev, Count: -1}, ErrFutureRev
	}
	if rev <= 0 {
		rev = curRev
	}
	if rev < s.compactRev.Load() {
		return &RangeResult{Count: -1}, ErrCompacted
	}
	if ro.Count {
		return &RangeResult{Rev: curRev, Count: int64(s.ix.count(key, end, rev))}, nil
	}
	revs, total := s.ix.revisions(key, end, rev, int(ro.Limit))
	if len(revs) == 0 {
		return &RangeResult{Rev: curRev, Count: int64(total)}, nil
	}
	kvs, err := fetch(revs)
	if err != nil {
		return nil, err
	}
	return &RangeResult{KVs: kvs, Rev: curRev, Count: int64(total)}, nil
}

// readRevisions reads live revisions from bbolt; revisions found in pending
// (a write transaction's uncommitted view) are taken from there.
func readRevisions(tx *bolt.Tx, revs []Revision, pending map[Revision]*mvccpb.KeyValue) ([]*mvccpb.KeyValue, error) {
	kvs := make([]*mvccpb.KeyValue, len(revs))
	b := tx.Bucket(bucketKey)
	for i, rev := range revs {
		if kv, ok := pending[rev]; ok {
			kvs[i] = cloneKV(kv)
			continue
		}
		v := b.Get(revToBytes(rev, false))
		if v == nil {
			return nil, fmt.Errorf("mvcc: revision %d/%d missing from disk", rev.Main, rev.Sub)
		}
		kv := new(mvccpb.KeyValue)
		if err := proto.Unmarshal(v, kv); err != nil {
			return nil, fmt.Errorf("mvcc: revision %d/%d: %w", rev.Main, rev.Sub, err)
		}
		kvs[i] = kv
	}
	return kvs, nil
}

// WriteTxn is the exclusive write transaction. Its Range sees its own writes.
// All changes of one WriteTxn share one main revision.
type WriteTxn struct {
	s        *Store
	beginRev int64
	sub      int64
	records  []record
	events   []*mvccpb.Event
	leaseOps []leaseOp
}

type leaseOp struct {
	id, ttl int64
	revoke  bool
}

// Write starts the (exclusive) write transaction. Call End to commit it.
func (s *Store) Write() *WriteTxn {
	s.writeMu.Lock()
	s.mu.RLock()
	return &WriteTxn{s: s, beginRev: s.currentRev}
}

// Rev is the store revision once this transaction commits: the revision before
// it, plus one if it changed anything.
func (t *WriteTxn) Rev() int64 {
	if t.Changed() {
		return t.beginRev + 1
	}
	return t.beginRev
}

// Changed reports whether the transaction changed any key so far.
func (t *WriteTxn) Changed() bool { return len(t.records) > 0 }

// Range is ReadTxn.Range on the transaction's own view.
func (t *WriteTxn) Range(key, end []byte, ro RangeOptions) (*RangeResult, error) {
	return t.s.rangeKeys(key, end, t.Rev(), ro, t.fetch)
}

// fetch reads revisions that may still be pending. Pending entries are removed
// only after their batch is on disk, so a bbolt transaction opened after the
// pending lookup sees every revision the lookup missed.
func (t *WriteTxn) fetch(revs []Revision) ([]*mvccpb.KeyValue, error) {
	s := t.s
	s.pendingMu.RLock()
	found := make(map[Revision]*mvccpb.KeyValue)
	for _, r := range revs {
		if kv, ok := s.pending[r]; ok {
			found[r] = kv
		}
	}
	s.pendingMu.RUnlock()
	if len(found) == len(revs) {
		kvs := make([]*mvccpb.KeyValue, len(revs))
		for i, r := range revs {
			kvs[i] = cloneKV(found[r])
		}
		return kvs, nil
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("mvcc: read: %w", err)
	}
	defer tx.Rollback()
	return readRevisions(tx, revs, found)
}

func (t *WriteTxn) nextRev() Revision {
	r := Revision{Main: t.beginRev + 1, Sub: t.sub}
	t.sub++
	return r
}

// Put writes key=value attached to lease (0: none). It returns ErrLeaseNotFound
// if the lease does not exist, before changing anything.
func (t *WriteTxn) Put(key, value []byte, lease int64) error {
	s := t.s
	if lease != 0 && !s.leases.exists(lease) {
		return ErrLeaseNotFound
	}
	rev := t.nextRev()
	created, ver := rev.Main, int64(1)
	if _, c, v, ok := s.ix.get(key, rev.Main); ok {
		created, ver = c.Main, v+1
	}
	key = append([]byte(nil), key...)
	kv := &mvccpb.KeyValue{
		Key:            key,
		Value:          append([]byte(nil), value...),
		CreateRevision: created,
		ModRevision:    rev.Main,
		Version:        ver,
		Lease:          lease,
	}
	s.pendingMu.Lock()
	s.pending[rev] = kv
	s.pendingMu.Unlock()
	s.ix.put(key, rev)
	s.leases.setKeyLease(string(key), lease)
	t.records = append(t.records, record{rev: rev, kv: kv})
	t.events = append(t.events, &mvccpb.Event{Type: mvccpb.PUT, Kv: kv})
	return nil
}

// DeleteRange deletes the keys in [key, end) and returns how many it deleted.
func (t *WriteTxn) DeleteRange(key, end []byte) int64 {
	keys := t.s.ix.liveKeys(key, end, t.Rev())
	for _, k := range keys {
		t.delete(k)
	}
	return int64(len(keys))
}

func (t *WriteTxn) delete(key []byte) {
	s := t.s
	rev := t.nextRev()
	if !s.ix.tombstone(key, rev) {
		return
	}
	tomb := &mvccpb.KeyValue{Key: key}
	s.pendingMu.Lock()
	s.pending[rev] = tomb
	s.pendingMu.Unlock()
	s.leases.setKeyLease(string(key), 0)
	t.records = append(t.records, record{rev: rev, tombstone: true, kv: tomb})
	t.events = append(t.events, &mvccpb.Event{
		Type: mvccpb.DELETE,
		Kv:   &mvccpb.KeyValue{Key: key, ModRevision: rev.Main},
	})
}

// LeaseExists reports whether the lease exists in this transaction's view.
func (t *WriteTxn) LeaseExists(id int64) bool { return t.s.leases.exists(id) }

// GrantLease persists a new lease. ErrLeaseExists if the ID is taken.
func (t *WriteTxn) GrantLease(id, ttl int64) error {
	if !t.s.leases.grant(id, ttl) {
		return ErrLeaseExists
	}
	t.leaseOps = append(t.leaseOps, leaseOp{id: id, ttl: ttl})
	return nil
}

// RevokeLease deletes the lease and every key attached to it (sorted, one
// revision). ErrLeaseNotFound if there is no such lease.
func (t *WriteTxn) RevokeLease(id int64) error {
	keys, ok := t.s.leases.revoke(id)
	if !ok {
		return ErrLeaseNotFound
	}
	for _, k := range keys {
		t.delete([]byte(k))
	}
	t.leaseOps = append(t.leaseOps, leaseOp{id: id, revoke: true})
	return nil
}

// End commits: it releases the write lock and waits until the changes are
// durable. Readers see them only then. An error means the disk failed and the
// store refuses further writes.
func (t *WriteTxn) End() error {
	s := t.s
	if s == nil {
		return nil
	}
	t.s = nil
	if len(t.records) == 0 && len(t.leaseOps) == 0 {
		s.mu.RUnlock()
		s.writeMu.Unlock()
		return nil
	}
	if s.closed {
		s.mu.RUnlock()
		s.writeMu.Unlock()
		return ErrClosed
	}
	rev := t.Rev()
	s.currentRev = rev
	b := s.committer.add(func(b *commitBatch) {
		b.records = append(b.records, t.records...)
		if len(t.records) > 0 {
			b.lastRev = rev
			b.events = append(b.events, revEvents{rev: rev, events: t.events})
		}
		for _, op := range t.leaseOps {
			if op.revoke {
				b.leaseDels = append(b.leaseDels, op.id)
			} else {
				b.leasePuts = append(b.leasePuts, Lease{ID: op.id, TTL: op.ttl})
			}
		}
	})
	s.mu.RUnlock()
	s.writeMu.Unlock()
	<-b.done
	return b.err
}

// cloneKV copies a pending KeyValue so callers may modify what they get.
func cloneKV(kv *mvccpb.KeyValue) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{
		Key:            kv.Key,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
		Value:          kv.Value,
		Lease:          kv.Lease,
	}
}
