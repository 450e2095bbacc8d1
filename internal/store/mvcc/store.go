package mvcc

import (
	"io"
	"log/slog"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Options configure Open.
type Options struct {
	Logger *slog.Logger
	// NoSync skips fsync on commit. Only for tests that do not test durability.
	NoSync bool
}

// Store is the engine. All methods are safe for concurrent use.
type Store struct{}

// Open opens (or creates) the bbolt database at path and rebuilds the index.
func Open(path string, opts Options) (*Store, error) { panic("mvcc: not implemented") }

// SetNotifier registers the receiver of committed changes. Call it before the
// first write.
func (s *Store) SetNotifier(n Notifier) { panic("mvcc: not implemented") }

// Read starts a read-only transaction at the latest durable revision. Call End.
func (s *Store) Read() *ReadTxn { panic("mvcc: not implemented") }

// Write starts the (exclusive) write transaction. Call End to commit it.
func (s *Store) Write() *WriteTxn { panic("mvcc: not implemented") }

// Rev is the latest durable revision.
func (s *Store) Rev() int64 { panic("mvcc: not implemented") }

// CompactRev is the revision of the last compaction (0 if none).
func (s *Store) CompactRev() int64 { panic("mvcc: not implemented") }

// Compact discards history below rev. It returns ErrCompacted if rev is not
// above the last compaction and ErrFutureRev if rev is above Rev(). The index
// is compacted before it returns; done is closed when the history is gone
// from disk too.
func (s *Store) Compact(rev int64) (done <-chan struct{}, err error) { panic("mvcc: not implemented") }

// Events calls fn for each committed revision in [from, to] that has changes,
// in order, until fn returns false. It returns ErrCompacted if from is at or
// below the compacted revision (and history there is gone).
func (s *Store) Events(from, to int64, fn func(rev int64, events []*mvccpb.Event) bool) error {
	panic("mvcc: not implemented")
}

// HashKV hashes the key space at rev (0: latest) like etcd's HashKV.
func (s *Store) HashKV(rev int64) (HashKVResult, error) { panic("mvcc: not implemented") }

// Hash hashes the whole database like etcd's Maintenance.Hash.
func (s *Store) Hash() (uint32, error) { panic("mvcc: not implemented") }

// DBSize returns the database file size and the bytes in use.
func (s *Store) DBSize() (size, inUse int64) { panic("mvcc: not implemented") }

// Defrag rewrites the database compactly.
func (s *Store) Defrag() error { panic("mvcc: not implemented") }

// Snapshot writes a consistent copy of the database to w and returns its size.
func (s *Store) Snapshot(w io.Writer) (int64, error) { panic("mvcc: not implemented") }

// Leases lists the persisted leases.
func (s *Store) Leases() []Lease { panic("mvcc: not implemented") }

// LeaseKeys lists the keys attached to a lease, sorted.
func (s *Store) LeaseKeys(id int64) []string { panic("mvcc: not implemented") }

// Close waits for pending commits and closes the database.
func (s *Store) Close() error { panic("mvcc: not implemented") }

// ReadTxn is a read-only view at one revision.
type ReadTxn struct{}

// Rev is the revision the transaction reads at.
func (t *ReadTxn) Rev() int64 { panic("mvcc: not implemented") }

// Range returns the keys in [key, end). end == nil means the single key;
// end == "\x00" means every key >= key.
func (t *ReadTxn) Range(key, end []byte, ro RangeOptions) (*RangeResult, error) {
	panic("mvcc: not implemented")
}

// End releases the transaction.
func (t *ReadTxn) End() {}

// WriteTxn is the exclusive write transaction. Its Range sees its own writes.
// All changes of one WriteTxn share one main revision.
type WriteTxn struct{}

// Rev is the store revision once this transaction commits: the revision before
// it, plus one if it changed anything.
func (t *WriteTxn) Rev() int64 { panic("mvcc: not implemented") }

// Changed reports whether the transaction changed anything so far.
func (t *WriteTxn) Changed() bool { panic("mvcc: not implemented") }

// Range is ReadTxn.Range on the transaction's own view.
func (t *WriteTxn) Range(key, end []byte, ro RangeOptions) (*RangeResult, error) {
	panic("mvcc: not implemented")
}

// Put writes key=value attached to lease (0: none). It returns ErrLeaseNotFound
// if the lease does not exist, before changing anything.
func (t *WriteTxn) Put(key, value []byte, lease int64) error { panic("mvcc: not implemented") }

// DeleteRange deletes the keys in [key, end) and returns how many it deleted.
func (t *WriteTxn) DeleteRange(key, end []byte) int64 { panic("mvcc: not implemented") }

// LeaseExists reports whether the lease exists in this transaction's view.
func (t *WriteTxn) LeaseExists(id int64) bool { panic("mvcc: not implemented") }

// GrantLease persists a new lease. ErrLeaseExists if the ID is taken.
func (t *WriteTxn) GrantLease(id, ttl int64) error { panic("mvcc: not implemented") }

// RevokeLease deletes the lease and every key attached to it (sorted, one
// revision). ErrLeaseNotFound if there is no such lease.
func (t *WriteTxn) RevokeLease(id int64) error { panic("mvcc: not implemented") }

// End commits: it releases the write lock and waits until the changes are
// durable. Readers see them only then. An error means the disk failed and the
// store refuses further writes.
func (t *WriteTxn) End() error { panic("mvcc: not implemented") }
