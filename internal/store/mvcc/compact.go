package mvcc

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// compactBatch is how many revisions one bbolt transaction deletes, so that
// compacting a large history does not hold up commits for long.
const compactBatch = 1000

// Compact discards history below rev. It returns ErrCompacted if rev is not
// above the last compaction and ErrFutureRev if rev is above the current
// revision. The index is compacted before it returns; done is closed when the
// history is gone from disk too.
func (s *Store) Compact(rev int64) (<-chan struct{}, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.mu.Lock()
	if rev <= s.compactRev.Load() {
		s.mu.Unlock()
		return nil, ErrCompacted
	}
	if rev > s.currentRev {
		s.mu.Unlock()
		return nil, ErrFutureRev
	}
	s.compactRev.Store(rev)
	keep := s.ix.compact(rev)
	s.mu.Unlock()

	// The compaction is recorded before it is acknowledged, so a restart
	// finishes what a crash interrupted.
	s.committer.diskMu.Lock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaScheduledCompact, int64Bytes(rev))
	})
	s.committer.diskMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("mvcc: record compaction: %w", err)
	}
	done := make(chan struct{})
	s.compactWG.Add(1)
	go s.compactDisk(rev, keep, done)
	return done, nil
}

// compactDisk deletes the revisions at or below rev that keep does not hold.
func (s *Store) compactDisk(rev int64, keep map[Revision]struct{}, done chan struct{}) {
	defer s.compactWG.Done()
	if done != nil {
		defer close(done)
	}
	end := revToBytes(Revision{Main: rev + 1}, false)
	from := revToBytes(Revision{}, false)
	for {
		var last []byte
		s.committer.diskMu.Lock()
		err := s.db.Update(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketKey).Cursor()
			n := 0
			for k, _ := c.Seek(from); k != nil && bytes.Compare(k, end) < 0; k, _ = c.Next() {
				last = append(last[:0], k...)
				if _, ok := keep[bytesToRev(k)]; ok {
					continue
				}
				if err := c.Delete(); err != nil {
					return err
				}
				if n++; n >= compactBatch {
					break
				}
			}
			if last == nil || n < compactBatch {
				last = nil
				return tx.Bucket(bucketMeta).Put(metaFinishedCompact, int64Bytes(rev))
			}
			return nil
		})
		s.committer.diskMu.Unlock()
		if err != nil {
			s.lg.Error("compaction failed; it resumes at the next start", "revision", rev, "err", err)
			return
		}
		if last == nil {
			s.lg.Info("compaction finished", "revision", rev)
			return
		}
		from = append(last, 0)
	}
}
