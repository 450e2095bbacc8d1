package mvcc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// Options configure Open.
type Options struct {
	Logger *slog.Logger
	// NoSync skips fsync on commit. Only for tests that do not test durability.
	NoSync bool
}

var (
	bucketKey   = []byte("key")
	bucketMeta  = []byte("meta")
	bucketLease = []byte("lease")

	metaRev              = []byte("currentRev")
	metaScheduledCompact = []byte("scheduledCompactRev")
	metaFinishedCompact  = []byte("finishedCompactRev")
)

// Store is the engine. All methods are safe for concurrent use.
//
// Locks, outermost first: writeMu (one writer at a time), mu (held shared by
// every transaction, exclusively by compaction so the index is not compacted
// under a reader), then the short-lived index, lease and pending locks.
type Store struct {
	lg   *slog.Logger
	path string
	opts Options

	db *bolt.DB
	ix *index

	writeMu    sync.Mutex
	mu         sync.RWMutex
	currentRev int64 // applied, maybe not durable; guarded by writeMu
	closed     bool  // guarded by writeMu

	committedRev atomic.Int64 // durable and visible to readers
	compactRev   atomic.Int64
	size         atomic.Int64 // database file size, see Size

	leases leaseTable

	pendingMu sync.RWMutex
	pending   map[Revision]*mvccpb.KeyValue // applied but not yet durable

	committer committer

	notifyMu sync.Mutex
	notifier Notifier

	compactWG sync.WaitGroup
	closeOnce sync.Once
}

// Open opens (or creates) the bbolt database at path and rebuilds the index.
func Open(path string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{
		lg:      opts.Logger,
		path:    path,
		opts:    opts,
		ix:      newIndex(),
		pending: make(map[Revision]*mvccpb.KeyValue),
		leases:  newLeaseTable(),
	}
	if err := s.openDB(); err != nil {
		return nil, err
	}
	start := time.Now()
	scheduled, finished, err := s.restore()
	if err != nil {
		s.db.Close()
		return nil, fmt.Errorf("mvcc: restore %s: %w", path, err)
	}
	s.lg.Info("store opened", "path", path, "revision", s.currentRev,
		"compact_revision", s.compactRev.Load(), "took", time.Since(start))
	s.committer.start(s)
	if scheduled > finished {
		// A compaction was interrupted by a crash: finish it.
		s.compactWG.Add(1)
		go s.compactDisk(scheduled, s.ix.compact(scheduled), nil)
	}
	return s, nil
}

func (s *Store) openDB() error {
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{
		Timeout:         5 * time.Second,
		NoSync:          s.opts.NoSync,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 1 << 30,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("mvcc: open %s: %w (another process holds the database: is a herd store already running on this data dir?)", s.path, err)
	}
	if err != nil {
		return fmt.Errorf("mvcc: open %s: %w", s.path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKey, bucketMeta, bucketLease} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("mvcc: init %s: %w", s.path, err)
	}
	s.db = db
	return db.View(func(tx *bolt.Tx) error {
		s.size.Store(tx.Size())
		return nil
	})
}

// restore rebuilds the index, the revision counters and the leases from disk.
func (s *Store) restore() (scheduled, finished int64, err error) {
	keyLease := make(map[string]int64)
	err = s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		s.currentRev = metaInt(meta, metaRev)
		scheduled = metaInt(meta, metaScheduledCompact)
		finished = metaInt(meta, metaFinishedCompact)

		err := tx.Bucket(bucketKey).ForEach(func(k, v []byte) error {
			if len(k) < revKeyLen {
				return fmt.Errorf("bad revision key %x", k)
			}
			var kv mvccpb.KeyValue
			if err := proto.Unmarshal(v, &kv); err != nil {
				return fmt.Errorf("revision %v: %w", bytesToRev(k), err)
			}
			rev := bytesToRev(k)
			tomb := isTombstoneKey(k)
			s.ix.restore(kv.Key, rev, tomb, kv.CreateRevision, kv.Version)
			if !tomb && kv.Lease != 0 {
				keyLease[string(kv.Key)] = kv.Lease
			} else {
				delete(keyLease, string(kv.Key))
			}
			if rev.Main > s.currentRev {
				s.currentRev = rev.Main
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketLease).ForEach(func(k, v []byte) error {
			if len(k) != 8 || len(v) != 8 {
				return fmt.Errorf("bad lease record %x", k)
			}
			s.leases.grant(int64(binary.BigEndian.Uint64(k)), int64(binary.BigEndian.Uint64(v)))
			return nil
		})
	})
	if err != nil {
		return 0, 0, err
	}
	if s.currentRev == 0 {
		// etcd starts at revision 1.
		s.currentRev = 1
	}
	for key, id := range keyLease {
		if !s.leases.attach(id, key) {
			s.lg.Warn("key attached to a missing lease", "key", key, "lease", id)
		}
	}
	if scheduled > 0 {
		s.ix.compact(scheduled)
		s.compactRev.Store(scheduled)
	}
	s.committedRev.Store(s.currentRev)
	return scheduled, finished, nil
}

func metaInt(b *bolt.Bucket, key []byte) int64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func int64Bytes(n int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(n))
	return b
}

// SetNotifier registers the receiver of committed changes.
func (s *Store) SetNotifier(n Notifier) {
	s.notifyMu.Lock()
	s.notifier = n
	s.notifyMu.Unlock()
}

func (s *Store) notify(b *commitBatch) {
	s.notifyMu.Lock()
	n := s.notifier
	s.notifyMu.Unlock()
	if n == nil {
		return
	}
	for _, re := range b.events {
		n.Notify(re.rev, re.events)
	}
}

// Rev is the latest durable revision.
func (s *Store) Rev() int64 { return s.committedRev.Load() }

// CompactRev is the revision of the last compaction (0 if none).
func (s *Store) CompactRev() int64 { return s.compactRev.Load() }

// Close waits for pending commits and closes the database.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.writeMu.Lock()
		s.closed = true
		s.committer.stop()
		s.compactWG.Wait()
		err = s.db.Close()
		s.writeMu.Unlock()
	})
	return err
}
