package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ack is a put that herd store acknowledged.
type ack struct {
	key string
	rev int64
}

// crashValue is the value written to key, so any key read back can be
// checked without remembering unacknowledged puts.
func crashValue(key string) string { return "value-of-" + key }

// TestCrashRecovery kills herd store with SIGKILL in the middle of a write
// load, several times on one data directory, and checks after each restart
// that every acknowledged write survived and the store is consistent.
func TestCrashRecovery(t *testing.T) {
	const (
		rounds  = 5
		writers = 16
	)
	dataDir := t.TempDir()
	var acked []ack
	p := startHerd(t, dataDir)
	for round := range rounds {
		// After killAfter acknowledged puts the process is killed while
		// the writers keep going; varying it kills at different points.
		killAfter := 1000 + 700*round
		acks := loadUntilKilled(t, p, round, writers, killAfter)
		acked = append(acked, acks...)

		p = startHerd(t, dataDir)
		verifyAcked(t, p, acked, fmt.Sprintf("after kill %d", round))
		// What recovery left must itself survive: kill the idle process
		// and restart once more.
		p = restartSame(t, p, dataDir, func() { p.kill9() })
		verifyAcked(t, p, acked, fmt.Sprintf("after kill %d and an idle kill", round))
		if t.Failed() {
			return
		}
	}
	p = restartSame(t, p, dataDir, func() { p.stop(syscall.SIGTERM) })
	verifyAcked(t, p, acked, "after a clean restart")
}

// restartSame stops p with stop, restarts herd store on dataDir and checks
// that the key space hashes the same as before.
func restartSame(t *testing.T, p *herdProcess, dataDir string, stop func()) *herdProcess {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before, err := p.client().HashKV(ctx, p.endpoint, 0)
	if err != nil {
		t.Fatalf("HashKV: %v", err)
	}
	stop()
	p = startHerd(t, dataDir)
	after, err := p.client().HashKV(ctx, p.endpoint, before.Header.Revision)
	if err != nil {
		t.Fatalf("HashKV at revision %d after restart: %v", before.Header.Revision, err)
	}
	if after.Hash != before.Hash || after.Header.Revision != before.Header.Revision {
		t.Errorf("HashKV at revision %d: %d before the restart; %d at revision %d after",
			before.Header.Revision, before.Hash, after.Hash, after.Header.Revision)
	}
	return p
}

// loadUntilKilled runs writers that put distinct keys until killAfter puts
// are acknowledged, then kills p with SIGKILL mid-load. It returns every
// acknowledged put.
func loadUntilKilled(t *testing.T, p *herdProcess, round, writers, killAfter int) []ack {
	t.Helper()
	c := p.client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var (
		acked     atomic.Int64
		inDoubt   atomic.Int64 // puts cut off by the kill
		killed    atomic.Bool
		reachedCh = make(chan struct{})
		reached   sync.Once
		results   = make([][]ack, writers)
		errs      = make(chan error, writers)
		wg        sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for seq := 0; ; seq++ {
				key := fmt.Sprintf("crash/%d/%02d/%07d", round, w, seq)
				putCtx, putCancel := context.WithTimeout(ctx, 30*time.Second)
				resp, err := c.Put(putCtx, key, crashValue(key))
				putCancel()
				if err != nil {
					// Failures are expected once the process is killed;
					// before that, any failure is a bug.
					if !killed.Load() {
						errs <- fmt.Errorf("put %s before the kill: %w", key, err)
					} else {
						inDoubt.Add(1)
					}
					return
				}
				results[w] = append(results[w], ack{key: key, rev: resp.Header.Revision})
				if acked.Add(1) == int64(killAfter) {
					reached.Do(func() { close(reachedCh) })
				}
			}
		})
	}

	stopWriters := func() {
		killed.Store(true)
		cancel()
		wg.Wait()
	}
	select {
	case <-reachedCh:
	case err := <-errs:
		stopWriters()
		t.Fatalf("round %d: %v", round, err)
	case <-p.exited:
		stopWriters()
		t.Fatalf("round %d: herd store exited under load (%v)", round, p.waitErr)
	case <-time.After(3 * time.Minute):
		stopWriters()
		t.Fatalf("round %d: only %d puts acknowledged in 3 minutes", round, acked.Load())
	}
	killed.Store(true)
	p.kill9()
	stopWriters()
	close(errs)
	for err := range errs {
		t.Errorf("round %d: %v", round, err)
	}

	var all []ack
	for _, r := range results {
		all = append(all, r...)
	}
	t.Logf("round %d: %d puts acknowledged, %d cut off by SIGKILL", round, len(all), inDoubt.Load())
	return all
}

// verifyAcked checks that p holds every acknowledged put, at the revision
// it was acknowledged with, that the whole key space reads and hashes, and
// that new writes get revisions above every acknowledged one.
func verifyAcked(t *testing.T, p *herdProcess, acked []ack, when string) {
	t.Helper()
	c := p.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	resp, err := c.Get(ctx, "crash/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("%s: get crash/: %v", when, err)
	}
	byKey := make(map[string]int64, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		byKey[key] = kv.ModRevision
		if string(kv.Value) != crashValue(key) || kv.Version != 1 || kv.CreateRevision != kv.ModRevision {
			t.Errorf("%s: %s = %q (create %d, mod %d, version %d), want %q written once",
				when, key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, crashValue(key))
		}
	}

	var maxRev int64
	var lost []string
	revs := make(map[int64]string, len(acked))
	for _, a := range acked {
		maxRev = max(maxRev, a.rev)
		if other, dup := revs[a.rev]; dup {
			t.Errorf("%s: puts of %s and %s were both acknowledged at revision %d", when, other, a.key, a.rev)
		}
		revs[a.rev] = a.key
		rev, ok := byKey[a.key]
		switch {
		case !ok:
			lost = append(lost, fmt.Sprintf("%s@%d", a.key, a.rev))
		case rev != a.rev:
			t.Errorf("%s: %s has mod revision %d, acknowledged at %d", when, a.key, rev, a.rev)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%s: %d of %d acknowledged puts lost, e.g. %s",
			when, len(lost), len(acked), strings.Join(lost[:min(len(lost), 10)], ", "))
	}
	if resp.Header.Revision < maxRev {
		t.Errorf("%s: store revision %d is below acknowledged revision %d", when, resp.Header.Revision, maxRev)
	}

	// The whole key space must read and hash.
	all, err := c.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("%s: full range: %v", when, err)
	}
	if all.Count < int64(len(resp.Kvs)) {
		t.Errorf("%s: full range counts %d keys, fewer than the %d under crash/", when, all.Count, len(resp.Kvs))
	}
	if _, err := c.HashKV(ctx, p.endpoint, 0); err != nil {
		t.Errorf("%s: HashKV: %v", when, err)
	}

	probe := fmt.Sprintf("probe/%d", maxRev)
	put, err := c.Put(ctx, probe, "x")
	if err != nil {
		t.Fatalf("%s: put %s: %v", when, probe, err)
	}
	if put.Header.Revision <= maxRev {
		t.Errorf("%s: new put got revision %d, want above the highest acknowledged %d", when, put.Header.Revision, maxRev)
	}
}
