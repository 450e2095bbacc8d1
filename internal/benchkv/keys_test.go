package benchkv

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		size int
		want []byte
	}{
		// Zig-zag varint: n >= 0 is encoded as the unsigned varint of 2n.
		{0, 8, []byte{0, 0, 0, 0, 0, 0, 0, 0}},
		{1, 8, []byte{2, 0, 0, 0, 0, 0, 0, 0}},
		{63, 4, []byte{126, 0, 0, 0}},
		{64, 4, []byte{0x80, 1, 0, 0}},
		{99999, 3, []byte{0xbe, 0x9a, 0x0c}},
	} {
		if got := Key(tc.n, tc.size); !bytes.Equal(got, tc.want) {
			t.Errorf("Key(%d, %d) = %x, want %x", tc.n, tc.size, got, tc.want)
		}
	}
}

func TestKeysAreDistinctAndDecodable(t *testing.T) {
	const space = 100000
	size := KeySizeFor(space)
	seen := make(map[string]bool, space)
	for n := range int64(space) {
		k := Key(n, size)
		if seen[string(k)] {
			t.Fatalf("Key(%d) = %x repeats an earlier key", n, k)
		}
		seen[string(k)] = true
		if got, _ := binary.Varint(k); got != n {
			t.Fatalf("Key(%d) decodes to %d", n, got)
		}
	}
}

func TestKeyDoesNotDependOnPreviousKey(t *testing.T) {
	// etcd's tool reuses a buffer, so a short key after a long one keeps
	// stale bytes; here key n is always the same bytes.
	_ = Key(1<<40, 8)
	if got, want := Key(1, 8), []byte{2, 0, 0, 0, 0, 0, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf("Key(1, 8) = %x, want %x", got, want)
	}
}

func TestKeySizeFor(t *testing.T) {
	for space, want := range map[int64]int{0: 1, 1: 1, 64: 1, 65: 2, 8192: 2, 8193: 3, 100000: 3, 1 << 40: 6} {
		if got := KeySizeFor(space); got != want {
			t.Errorf("KeySizeFor(%d) = %d, want %d", space, got, want)
		}
	}
}

func TestValidateKeys(t *testing.T) {
	if err := validateKeys(8, 100000); err != nil {
		t.Errorf("validateKeys(8, 100000) = %v, want nil", err)
	}
	if err := validateKeys(2, 100000); err == nil {
		t.Error("validateKeys(2, 100000) = nil, want an error: keys need 3 bytes")
	}
	if err := validateKeys(8, 0); err == nil {
		t.Error("validateKeys(8, 0) = nil, want an error")
	}
}

func TestKeyGen(t *testing.T) {
	seq := newKeyGen(3, true, 1)
	for i, want := range []int64{0, 1, 2, 0, 1} {
		if got := seq.next(int64(i)); got != want {
			t.Errorf("sequential next(%d) = %d, want %d", i, got, want)
		}
	}
	rnd := newKeyGen(10, false, 1)
	hit := map[int64]bool{}
	for i := range int64(1000) {
		n := rnd.next(i)
		if n < 0 || n >= 10 {
			t.Fatalf("random next = %d, outside [0, 10)", n)
		}
		hit[n] = true
	}
	if len(hit) != 10 {
		t.Errorf("1000 random draws hit %d of 10 keys", len(hit))
	}
}
