package mvcc

import (
	"fmt"
	"hash/crc32"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// HashKV hashes the key space at rev (0: latest) exactly as etcd does, so the
// digests of a herd store and an etcd holding the same history are equal.
func (s *Store) HashKV(rev int64) (HashKVResult, error) {
	s.mu.RLock()
	compactRev, currentRev := s.compactRev.Load(), s.committedRev.Load()
	if rev > 0 && rev < compactRev {
		s.mu.RUnlock()
		return HashKVResult{}, ErrCompacted
	}
	if rev > 0 && rev > currentRev {
		s.mu.RUnlock()
		return HashKVResult{}, ErrFutureRev
	}
	if rev == 0 {
		rev = currentRev
	}
	keep := s.ix.keep(rev)
	tx, err := s.db.Begin(false)
	s.mu.RUnlock()
	if err != nil {
		return HashKVResult{}, fmt.Errorf("mvcc: hash: %w", err)
	}
	defer tx.Rollback()

	h := crc32.New(castagnoli)
	h.Write(bucketKey)
	upper := Revision{Main: rev + 1}
	lower := Revision{Main: compactRev + 1}
	err = tx.Bucket(bucketKey).ForEach(func(k, v []byte) error {
		kr := bytesToRev(k)
		if !upper.GreaterThan(kr) {
			return nil
		}
		if lower.GreaterThan(kr) && len(keep) > 0 {
			if _, ok := keep[kr]; !ok {
				return nil
			}
		}
		if kr.Main == compactRev && isTombstoneKey(k) {
			return nil
		}
		h.Write(k)
		h.Write(v)
		return nil
	})
	if err != nil {
		return HashKVResult{}, fmt.Errorf("mvcc: hash: %w", err)
	}
	return HashKVResult{Hash: h.Sum32(), CompactRevision: compactRev, HashRevision: rev}, nil
}

// Hash hashes the whole database: every bucket's name, keys and values.
func (s *Store) Hash() (uint32, error) {
	h := crc32.New(castagnoli)
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			h.Write(name)
			return b.ForEach(func(k, v []byte) error {
				h.Write(k)
				h.Write(v)
				return nil
			})
		})
	})
	if err != nil {
		return 0, fmt.Errorf("mvcc: hash: %w", err)
	}
	return h.Sum32(), nil
}

// Size is the database file size as of the last commit. It is cheap: quota
// checks call it on every write.
func (s *Store) Size() int64 { return s.size.Load() }

// DBSize returns the database file size and the bytes in use.
func (s *Store) DBSize() (size, inUse int64) {
	s.db.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		stats := s.db.Stats()
		inUse = size - int64(stats.FreePageN+stats.PendingPageN)*int64(s.db.Info().PageSize)
		return nil
	})
	return size, inUse
}

// Snapshot writes a consistent copy of the database. It tells start the size
// of the copy first (a stream's framing may need it), then writes the copy to
// the writer start returns, and returns the bytes written.
func (s *Store) Snapshot(start func(size int64) io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(start(tx.Size()))
		return err
	})
	if err != nil {
		return n, fmt.Errorf("mvcc: snapshot: %w", err)
	}
	return n, nil
}

// Defrag rewrites the database into a fresh file, releasing free pages. Reads
// and writes wait while it runs.
func (s *Store) Defrag() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.committer.flush()
	s.committer.diskMu.Lock()
	defer s.committer.diskMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()

	tmp := s.path + ".defrag"
	os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("mvcc: defrag: %w", err)
	}
	if err := bolt.Compact(dst, s.db, 1<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("mvcc: defrag: %w", err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return fmt.Errorf("mvcc: defrag: %w", err)
	}
	dst.Close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("mvcc: defrag: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("mvcc: defrag: %w", err)
	}
	return s.openDB()
}
