package mvcc

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func openTest(t testing.TB, noSync bool) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(path, Options{NoSync: noSync, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func put(t testing.TB, s *Store, key, value string, lease int64) {
	t.Helper()
	w := s.Write()
	err := w.Put([]byte(key), []byte(value), lease)
	if endErr := w.End(); err == nil {
		err = endErr
	}
	if err != nil {
		t.Fatal(err)
	}
}

func get(t testing.TB, s *Store, key string) *mvccpb.KeyValue {
	t.Helper()
	r := s.Read()
	defer r.End()
	res, err := r.Range([]byte(key), nil, RangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.KVs) == 0 {
		return nil
	}
	return res.KVs[0]
}

func TestRangeOptions(t *testing.T) {
	s, _ := openTest(t, true)
	for _, k := range []string{"a", "b", "c", "d"} {
		put(t, s, k, k, 0)
	}
	tests := []struct {
		name      string
		key, end  string
		ro        RangeOptions
		wantKeys  string
		wantCount int64
		wantErr   error
	}{
		{"single", "b", "", RangeOptions{}, "b", 1, nil},
		{"missing", "z", "", RangeOptions{}, "", 0, nil},
		{"range", "b", "d", RangeOptions{}, "bc", 2, nil},
		{"from key", "b", "\x00", RangeOptions{}, "bcd", 3, nil},
		{"all", "\x00", "\x00", RangeOptions{}, "abcd", 4, nil},
		{"limit", "a", "\x00", RangeOptions{Limit: 2}, "ab", 4, nil},
		{"count", "a", "\x00", RangeOptions{Count: true}, "", 4, nil},
		{"historic", "a", "\x00", RangeOptions{Rev: 3}, "ab", 2, nil},
		{"future", "a", "", RangeOptions{Rev: 99}, "", -1, ErrFutureRev},
		{"end before key", "c", "a", RangeOptions{}, "", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var end []byte
			if tt.end != "" {
				end = []byte(tt.end)
			}
			r := s.Read()
			res, err := r.Range([]byte(tt.key), end, RangeOptions(tt.ro))
			r.End()
			if err != tt.wantErr {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			var keys bytes.Buffer
			for _, kv := range res.KVs {
				keys.Write(kv.Key)
			}
			if keys.String() != tt.wantKeys || res.Count != tt.wantCount {
				t.Fatalf("got %q count %d, want %q count %d", keys.String(), res.Count, tt.wantKeys, tt.wantCount)
			}
		})
	}
}

func TestWriteTxnSeesOwnWrites(t *testing.T) {
	s, _ := openTest(t, true)
	put(t, s, "a", "1", 0)
	w := s.Write()
	w.Put([]byte("a"), []byte("2"), 0)
	w.Put([]byte("b"), []byte("3"), 0)
	res, err := w.Range([]byte("a"), []byte("c"), RangeOptions{})
	if err != nil || len(res.KVs) != 2 || string(res.KVs[0].Value) != "2" || res.KVs[0].Version != 2 || res.Rev != 3 {
		t.Fatalf("%v %s rev %d", err, kvString(res.KVs), res.Rev)
	}
	if n := w.DeleteRange([]byte("a"), []byte("c")); n != 2 {
		t.Fatalf("deleted %d", n)
	}
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	if s.Rev() != 3 || get(t, s, "a") != nil {
		t.Fatalf("rev %d", s.Rev())
	}
	var evs []*mvccpb.Event
	s.Events(3, 3, func(_ int64, e []*mvccpb.Event) bool { evs = e; return true })
	if len(evs) != 4 || evs[3].Type != mvccpb.DELETE || evs[3].Kv.ModRevision != 3 {
		t.Fatalf("events %s", eventsString(evs))
	}
}

func TestNoopWriteKeepsRevision(t *testing.T) {
	s, _ := openTest(t, true)
	w := s.Write()
	if n := w.DeleteRange([]byte("nothing"), nil); n != 0 {
		t.Fatal(n)
	}
	w.End()
	if s.Rev() != 1 {
		t.Fatalf("rev %d, want 1", s.Rev())
	}
}

func TestLeases(t *testing.T) {
	s, path := openTest(t, false)
	w := s.Write()
	if err := w.GrantLease(7, 30); err != nil {
		t.Fatal(err)
	}
	if err := w.GrantLease(7, 30); err != ErrLeaseExists {
		t.Fatalf("duplicate grant: %v", err)
	}
	if err := w.Put([]byte("x"), nil, 8); err != ErrLeaseNotFound {
		t.Fatalf("unknown lease: %v", err)
	}
	w.End()
	put(t, s, "b", "1", 7)
	put(t, s, "a", "1", 7)
	put(t, s, "c", "1", 7)
	put(t, s, "c", "2", 0) // moves c off the lease
	if got := fmt.Sprint(s.LeaseKeys(7)); got != "[a b]" {
		t.Fatalf("keys %s", got)
	}
	s.Close()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := fmt.Sprint(s.Leases(), s.LeaseKeys(7)); got != "[{7 30}] [a b]" {
		t.Fatalf("after restart %s", got)
	}
	rev := s.Rev()
	w = s.Write()
	if err := w.RevokeLease(7); err != nil {
		t.Fatal(err)
	}
	w.End()
	if s.Rev() != rev+1 || get(t, s, "a") != nil || get(t, s, "c") == nil || len(s.Leases()) != 0 {
		t.Fatalf("revoke: rev %d->%d leases %v", rev, s.Rev(), s.Leases())
	}
}

// TestConcurrentWriters checks that group commit keeps every acknowledged
// write, gives each transaction its own revision, and lets readers run.
func TestConcurrentWriters(t *testing.T) {
	s, path := openTest(t, false)
	const writers, each = 16, 50
	var wg sync.WaitGroup
	revs := make(chan int64, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				tx := s.Write()
				tx.Put([]byte(fmt.Sprintf("k%d-%d", w, i)), []byte("v"), 0)
				rev := tx.Rev()
				if err := tx.End(); err != nil {
					t.Error(err)
					return
				}
				if s.Rev() < rev {
					t.Errorf("acknowledged rev %d not visible (rev %d)", rev, s.Rev())
				}
				revs <- rev
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r := s.Read()
				if _, err := r.Range([]byte("k"), []byte{0}, RangeOptions{Count: true}); err != nil {
					t.Error(err)
				}
				r.End()
			}
		}()
	}
	wg.Wait()
	close(revs)
	seen := map[int64]bool{}
	for r := range revs {
		if seen[r] {
			t.Fatalf("revision %d given twice", r)
		}
		seen[r] = true
	}
	s.Close()
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	r := s2.Read()
	defer r.End()
	res, _ := r.Range([]byte("k"), []byte{0}, RangeOptions{Count: true})
	if res.Count != writers*each || s2.Rev() != writers*each+1 {
		t.Fatalf("count %d rev %d", res.Count, s2.Rev())
	}
}

func TestDefragAndSnapshot(t *testing.T) {
	s, _ := openTest(t, true)
	for i := 0; i < 200; i++ {
		put(t, s, fmt.Sprintf("k%03d", i%20), fmt.Sprint(i), 0)
	}
	h1, _ := s.HashKV(0)
	done, err := s.Compact(s.Rev() - 5)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	if err := s.Defrag(); err != nil {
		t.Fatal(err)
	}
	put(t, s, "after", "defrag", 0)
	if kv := get(t, s, "k019"); kv == nil || string(kv.Value) != "199" {
		t.Fatalf("after defrag: %v", kv)
	}
	h2, err := s.HashKV(h1.HashRevision)
	if err != nil || h2.Hash == h1.Hash && h2.CompactRevision == h1.CompactRevision {
		t.Fatalf("hash %v %v err %v", h1, h2, err)
	}
	var buf bytes.Buffer
	var size int64
	n, err := s.Snapshot(func(sz int64) io.Writer { size = sz; return &buf })
	if err != nil || n != int64(buf.Len()) || n == 0 || size != n {
		t.Fatalf("snapshot %d %d %v", n, buf.Len(), err)
	}
}

func BenchmarkPutParallel(b *testing.B) {
	s, _ := openTest(b, false)
	val := bytes.Repeat([]byte("v"), 256)
	b.SetParallelism(32)
	b.ResetTimer()
	var n int64
	var mu sync.Mutex
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n++
			k := fmt.Sprintf("key%08d", n)
			mu.Unlock()
			w := s.Write()
			w.Put([]byte(k), val, 0)
			if err := w.End(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRange(b *testing.B) {
	s, _ := openTest(b, true)
	for i := 0; i < 1000; i++ {
		put(b, s, fmt.Sprintf("key%04d", i), "value", 0)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := s.Read()
			r.Range([]byte("key0500"), nil, RangeOptions{})
			r.End()
		}
	})
}

// TestInterruptedCompactionResumes simulates a crash after a compaction was
// recorded but before its history was deleted from disk: the next Open must
// finish it, so reads below it fail and the kept history is what a finished
// compaction keeps.
func TestInterruptedCompactionResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		put(t, s, fmt.Sprintf("k%d", i%3), fmt.Sprint(i), 0)
	}
	want, err := s.HashKV(0)
	if err != nil {
		t.Fatal(err)
	}
	// What a finished compaction at 20 leaves, from a twin store.
	twinPath := filepath.Join(t.TempDir(), "twin")
	s.Close()
	copyFile(t, path, twinPath)
	twin, err := Open(twinPath, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	done, err := twin.Compact(20)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	wantAfter, _ := twin.HashKV(0)
	wantOnDisk := revisionsOnDisk(t, twin)
	twin.Close()

	// The crash: the compaction is recorded, nothing is deleted yet.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaScheduledCompact, int64Bytes(20))
	})
	db.Close()

	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.CompactRev() != 20 {
		t.Fatalf("compact rev %d, want 20", s.CompactRev())
	}
	r := s.Read()
	_, err = r.Range([]byte("k0"), nil, RangeOptions{Rev: 19})
	r.End()
	if err != ErrCompacted {
		t.Fatalf("read below the resumed compaction: %v", err)
	}
	s.Close() // waits for the resumed disk compaction
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.HashKV(0)
	if got != wantAfter || got.HashRevision != want.HashRevision {
		t.Fatalf("after resumed compaction %+v, want %+v (before: %+v)", got, wantAfter, want)
	}
	if n := revisionsOnDisk(t, s); n != wantOnDisk || n >= 30 {
		t.Fatalf("%d revisions on disk after the resumed compaction, want %d", n, wantOnDisk)
	}
}

func revisionsOnDisk(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketKey).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
