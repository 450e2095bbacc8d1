package mvcc

import (
	"bytes"
	"sync"

	"github.com/google/btree"
)

// index maps keys to their revisions, ordered by key.
type index struct {
	mu   sync.RWMutex
	tree *btree.BTreeG[*keyIndex]
}

func newIndex() *index {
	return &index{tree: btree.NewG(32, lessKey)}
}

// openEnd reports whether end means "every key from key on".
func openEnd(end []byte) bool { return len(end) == 1 && end[0] == 0 }

// visit calls f for each keyIndex in [key, end) (single key if end is empty).
// The caller holds mu.
func (ix *index) visit(key, end []byte, f func(ki *keyIndex) bool) {
	if len(end) == 0 {
		if ki, ok := ix.tree.Get(&keyIndex{key: key}); ok {
			f(ki)
		}
		return
	}
	open := openEnd(end)
	ix.tree.AscendGreaterOrEqual(&keyIndex{key: key}, func(ki *keyIndex) bool {
		if !open && bytes.Compare(ki.key, end) >= 0 {
			return false
		}
		return f(ki)
	})
}

// revisions returns the revisions of the keys alive at atRev in [key, end),
// at most limit of them (0: all), and how many there are in total.
func (ix *index) revisions(key, end []byte, atRev int64, limit int) (revs []Revision, total int) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ix.visit(key, end, func(ki *keyIndex) bool {
		if rev, _, _, ok := ki.get(atRev); ok {
			if limit <= 0 || len(revs) < limit {
				revs = append(revs, rev)
			}
			total++
		}
		return true
	})
	return revs, total
}

// count returns the number of keys alive at atRev in [key, end).
func (ix *index) count(key, end []byte, atRev int64) int {
	_, total := ix.revisions(key, end, atRev, -1)
	return total
}

// liveKeys returns the keys alive at atRev in [key, end).
func (ix *index) liveKeys(key, end []byte, atRev int64) [][]byte {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var keys [][]byte
	ix.visit(key, end, func(ki *keyIndex) bool {
		if _, _, _, ok := ki.get(atRev); ok {
			keys = append(keys, ki.key)
		}
		return true
	})
	return keys
}

// get returns the state of one key at atRev.
func (ix *index) get(key []byte, atRev int64) (modified, created Revision, ver int64, ok bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ki, found := ix.tree.Get(&keyIndex{key: key})
	if !found {
		return Revision{}, Revision{}, 0, false
	}
	return ki.get(atRev)
}

func (ix *index) put(key []byte, rev Revision) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ki, ok := ix.tree.Get(&keyIndex{key: key})
	if !ok {
		ki = newKeyIndex(key)
		ix.tree.ReplaceOrInsert(ki)
	}
	ki.put(rev)
}

func (ix *index) tombstone(key []byte, rev Revision) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ki, ok := ix.tree.Get(&keyIndex{key: key})
	if !ok {
		return false
	}
	return ki.tombstone(rev)
}

// restore replays one stored revision while the index is rebuilt at start.
func (ix *index) restore(key []byte, rev Revision, tombstone bool, created, ver int64) {
	ki, ok := ix.tree.Get(&keyIndex{key: key})
	switch {
	case !ok && tombstone:
		ki = &keyIndex{key: key}
		ki.restore(Revision{}, rev, 1)
		ki.generations = append(ki.generations, generation{})
		ix.tree.ReplaceOrInsert(ki)
	case !ok:
		ki = &keyIndex{key: key}
		ki.restore(Revision{Main: created}, rev, ver)
		ix.tree.ReplaceOrInsert(ki)
	case tombstone:
		ki.tombstone(rev)
	default:
		ki.put(rev)
	}
}

// compact drops history below rev and returns the revisions to keep on disk.
func (ix *index) compact(rev int64) map[Revision]struct{} {
	keep := make(map[Revision]struct{})
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var empty []*keyIndex
	ix.tree.Ascend(func(ki *keyIndex) bool {
		ki.compact(rev, keep)
		if ki.isEmpty() {
			empty = append(empty, ki)
		}
		return true
	})
	for _, ki := range empty {
		ix.tree.Delete(ki)
	}
	return keep
}

// keep is what compact(rev) would keep, without tombstones.
func (ix *index) keep(rev int64) map[Revision]struct{} {
	keep := make(map[Revision]struct{})
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ix.tree.Ascend(func(ki *keyIndex) bool {
		ki.keep(rev, keep)
		return true
	})
	return keep
}
