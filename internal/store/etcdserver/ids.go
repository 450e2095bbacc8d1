package etcdserver

import (
	"crypto/sha256"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// deriveID hashes a member name into a member or cluster ID. The same name
// always gives the same IDs, so nothing needs to be persisted; 0 (raft's "no
// member") is never returned.
func deriveID(kind, name string) uint64 {
	sum := sha256.Sum256([]byte("herd store " + kind + "\x00" + name))
	if id := binary.BigEndian.Uint64(sum[:8]); id != 0 {
		return id
	}
	return 1
}

// reqIDGen generates request IDs the way etcd's idutil.Generator does: the
// low 16 bits of the member ID, a millisecond timestamp and a counter. Only
// their encoded size matters here, since the size limit applies to the raft
// request that carries the ID.
type reqIDGen struct {
	prefix uint64
	suffix atomic.Uint64
}

const (
	idTimestampBits = 40
	idCounterBits   = 8
	idSuffixBits    = idTimestampBits + idCounterBits
)

func newReqIDGen(memberID uint64, now time.Time) *reqIDGen {
	g := &reqIDGen{prefix: uint64(uint16(memberID)) << idSuffixBits}
	ms := uint64(now.UnixMilli()) & (1<<idTimestampBits - 1)
	g.suffix.Store(ms << idCounterBits)
	return g
}

func (g *reqIDGen) next() uint64 {
	return g.prefix | (g.suffix.Add(1) & (1<<idSuffixBits - 1))
}
