package mvcc

import "bytes"

// keyIndex holds the revisions of one key, in generations: a generation runs
// from the key's creation to its deletion (the tombstone is the generation's
// last revision); the last generation is the live one, empty if the key is
// deleted. This is etcd's model, so versions and create revisions match.
type keyIndex struct {
	key         []byte
	modified    Revision
	generations []generation
}

type generation struct {
	ver     int64
	created Revision
	revs    []Revision
}

func (g *generation) isEmpty() bool { return g == nil || len(g.revs) == 0 }

// walk visits revisions newest first and returns the index of the first one
// for which f returns false, or -1.
func (g *generation) walk(f func(rev Revision) bool) int {
	for i := len(g.revs) - 1; i >= 0; i-- {
		if !f(g.revs[i]) {
			return i
		}
	}
	return -1
}

func newKeyIndex(key []byte) *keyIndex {
	return &keyIndex{key: key, generations: []generation{{}}}
}

func (ki *keyIndex) isEmpty() bool {
	return len(ki.generations) == 1 && ki.generations[0].isEmpty()
}

func (ki *keyIndex) put(rev Revision) {
	g := &ki.generations[len(ki.generations)-1]
	if len(g.revs) == 0 {
		g.created = rev
	}
	g.revs = append(g.revs, rev)
	g.ver++
	ki.modified = rev
}

// restore starts the index of a key from its oldest surviving revision.
func (ki *keyIndex) restore(created, modified Revision, ver int64) {
	ki.modified = modified
	ki.generations = []generation{{created: created, ver: ver, revs: []Revision{modified}}}
}

// tombstone ends the live generation; false if the key is not live.
func (ki *keyIndex) tombstone(rev Revision) bool {
	if ki.generations[len(ki.generations)-1].isEmpty() {
		return false
	}
	ki.put(rev)
	ki.generations = append(ki.generations, generation{})
	return true
}

// live reports whether the key exists at the latest revision.
func (ki *keyIndex) live() bool {
	return !ki.generations[len(ki.generations)-1].isEmpty()
}

// get returns the revision of the key at atRev, its generation's creation and
// the version at that revision.
func (ki *keyIndex) get(atRev int64) (modified, created Revision, ver int64, ok bool) {
	g := ki.findGeneration(atRev)
	if g.isEmpty() {
		return Revision{}, Revision{}, 0, false
	}
	n := g.walk(func(rev Revision) bool { return rev.Main > atRev })
	if n == -1 {
		return Revision{}, Revision{}, 0, false
	}
	return g.revs[n], g.created, g.ver - int64(len(g.revs)-n-1), true
}

// findGeneration finds the generation alive at rev, or nil.
func (ki *keyIndex) findGeneration(rev int64) *generation {
	last := len(ki.generations) - 1
	for i := last; i >= 0; i-- {
		g := &ki.generations[i]
		if len(g.revs) == 0 {
			continue
		}
		if i != last {
			if tomb := g.revs[len(g.revs)-1].Main; tomb <= rev {
				return nil
			}
		}
		if g.revs[0].Main <= rev {
			return g
		}
	}
	return nil
}

// compact drops the revisions older than the newest one at or below atRev and
// records the revisions that must stay on disk in keep.
func (ki *keyIndex) compact(atRev int64, keep map[Revision]struct{}) {
	genIdx, revIdx := ki.doCompact(atRev, keep)
	g := &ki.generations[genIdx]
	if !g.isEmpty() && revIdx != -1 {
		g.revs = g.revs[revIdx:]
	}
	ki.generations = ki.generations[genIdx:]
}

// keep is compact without changing the index: what a compaction at atRev
// would keep, minus tombstones (used for hashing).
func (ki *keyIndex) keep(atRev int64, keep map[Revision]struct{}) {
	if ki.isEmpty() {
		return
	}
	genIdx, revIdx := ki.doCompact(atRev, keep)
	g := &ki.generations[genIdx]
	if !g.isEmpty() && revIdx == len(g.revs)-1 && genIdx != len(ki.generations)-1 {
		delete(keep, g.revs[revIdx])
	}
}

func (ki *keyIndex) doCompact(atRev int64, keep map[Revision]struct{}) (genIdx, revIdx int) {
	genIdx = 0
	g := &ki.generations[0]
	// Skip the generations that ended before atRev.
	for genIdx < len(ki.generations)-1 {
		if tomb := g.revs[len(g.revs)-1].Main; tomb >= atRev {
			break
		}
		genIdx++
		g = &ki.generations[genIdx]
	}
	revIdx = g.walk(func(rev Revision) bool {
		if rev.Main <= atRev {
			keep[rev] = struct{}{}
			return false
		}
		return true
	})
	return genIdx, revIdx
}

// lessKey orders the index by key.
func lessKey(a, b *keyIndex) bool { return bytes.Compare(a.key, b.key) < 0 }
