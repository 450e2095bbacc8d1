package mvcc

import (
	"bytes"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// Events calls fn for each committed revision in [from, to] that has changes,
// in order, until fn returns false. It returns ErrCompacted if from is below
// the compacted revision (history there is gone), as etcd does for watches.
func (s *Store) Events(from, to int64, fn func(rev int64, events []*mvccpb.Event) bool) error {
	if to > s.committedRev.Load() {
		to = s.committedRev.Load()
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return fmt.Errorf("mvcc: read history: %w", err)
	}
	defer tx.Rollback()
	// Checked after the snapshot is taken: what it holds from here on is
	// complete.
	if from < s.compactRev.Load() {
		return ErrCompacted
	}
	if from > to {
		return nil
	}
	c := tx.Bucket(bucketKey).Cursor()
	end := revToBytes(Revision{Main: to + 1}, false)
	var cur int64
	var evs []*mvccpb.Event
	for k, v := c.Seek(revToBytes(Revision{Main: from}, false)); k != nil && bytes.Compare(k, end) < 0; k, v = c.Next() {
		rev := bytesToRev(k)
		if rev.Main != cur && len(evs) > 0 {
			if !fn(cur, evs) {
				return nil
			}
			evs = nil
		}
		cur = rev.Main
		kv := new(mvccpb.KeyValue)
		if err := proto.Unmarshal(v, kv); err != nil {
			return fmt.Errorf("mvcc: revision %d/%d: %w", rev.Main, rev.Sub, err)
		}
		ev := &mvccpb.Event{Type: mvccpb.PUT, Kv: kv}
		if isTombstoneKey(k) {
			ev.Type = mvccpb.DELETE
			kv.ModRevision = rev.Main
		}
		evs = append(evs, ev)
	}
	if len(evs) > 0 {
		fn(cur, evs)
	}
	return nil
}
