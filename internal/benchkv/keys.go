package benchkv

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// Key returns key number n of a benchmark key space: n as a signed varint
// (encoding/binary.PutVarint, as etcd's benchmark tool does) followed by zero
// bytes up to size. Unlike etcd's tool, which reuses one buffer and so leaves
// stale bytes behind a shorter varint, the key depends on n alone. size must
// be at least KeySizeFor(n+1); Key panics otherwise.
func Key(n int64, size int) []byte {
	k := make([]byte, size)
	binary.PutVarint(k, n)
	return k
}

// KeySizeFor is the smallest key size that can hold every key of a key space
// with keySpace keys (numbers 0 to keySpace-1).
func KeySizeFor(keySpace int64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutVarint(buf[:], max(keySpace-1, 0))
}

// keyGen chooses the key number of each request.
type keyGen struct {
	keySpace   int64
	sequential bool
	rnd        *rand.Rand
}

func newKeyGen(keySpace int64, sequential bool, seed uint64) *keyGen {
	return &keyGen{keySpace: keySpace, sequential: sequential, rnd: rand.New(rand.NewPCG(seed, seed>>1|1))}
}

// next is the key number for request i (0-based): i modulo the key space
// when sequential, otherwise uniformly random in the key space.
func (g *keyGen) next(i int64) int64 {
	if g.sequential {
		return i % g.keySpace
	}
	return g.rnd.Int64N(g.keySpace)
}

func validateKeys(keySize int, keySpace int64) error {
	if keySpace <= 0 {
		return fmt.Errorf("key space size must be positive, got %d", keySpace)
	}
	if need := KeySizeFor(keySpace); keySize < need {
		return fmt.Errorf("key size %d is too small for a key space of %d keys: need at least %d bytes", keySize, keySpace, need)
	}
	return nil
}
