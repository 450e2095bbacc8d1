package mvcc

import "encoding/binary"

// Revision identifies one change: Main is the store revision of the write
// transaction, Sub the position of the change inside it.
type Revision struct {
	Main int64
	Sub  int64
}

// GreaterThan orders revisions by Main, then Sub.
func (a Revision) GreaterThan(b Revision) bool {
	if a.Main != b.Main {
		return a.Main > b.Main
	}
	return a.Sub > b.Sub
}

// revKeyLen is the length of a bbolt key: 8 bytes main, '_', 8 bytes sub. A
// tombstone appends tombstoneMark. This is etcd's layout, which keeps HashKV
// comparable with etcd's.
const (
	revKeyLen     = 17
	tombstoneMark = 't'
)

func revToBytes(rev Revision, tombstone bool) []byte {
	n := revKeyLen
	if tombstone {
		n++
	}
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b, uint64(rev.Main))
	b[8] = '_'
	binary.BigEndian.PutUint64(b[9:], uint64(rev.Sub))
	if tombstone {
		b[revKeyLen] = tombstoneMark
	}
	return b
}

func bytesToRev(b []byte) Revision {
	return Revision{
		Main: int64(binary.BigEndian.Uint64(b[0:8])),
		Sub:  int64(binary.BigEndian.Uint64(b[9:])),
	}
}

func isTombstoneKey(b []byte) bool {
	return len(b) == revKeyLen+1 && b[revKeyLen] == tombstoneMark
}
