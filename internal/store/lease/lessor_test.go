package lease

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/herd-project/herd/internal/store/mvcc"
)

// fakeBackend keeps leases in memory and reports revocations on a channel.
type fakeBackend struct {
	mu      sync.Mutex
	leases  map[int64]int64
	keys    map[int64][]string
	failErr error
	revoked chan int64
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		leases:  make(map[int64]int64),
		keys:    make(map[int64][]string),
		revoked: make(chan int64, 100),
	}
}

func (b *fakeBackend) GrantLease(id, ttl int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.leases[id]; ok {
		return mvcc.ErrLeaseExists
	}
	b.leases[id] = ttl
	return nil
}

func (b *fakeBackend) RevokeLease(id int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failErr != nil {
		return b.failErr
	}
	if _, ok := b.leases[id]; !ok {
		return mvcc.ErrLeaseNotFound
	}
	delete(b.leases, id)
	delete(b.keys, id)
	b.revoked <- id
	return nil
}

func (b *fakeBackend) Leases() []mvcc.Lease {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []mvcc.Lease
	for id, ttl := range b.leases {
		out = append(out, mvcc.Lease{ID: id, TTL: ttl})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (b *fakeBackend) LeaseKeys(id int64) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.keys[id])
}

func (b *fakeBackend) has(id int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.leases[id]
	return ok
}

func newTestLessor(t *testing.T, b *fakeBackend, grace time.Duration) (*Lessor, *clockwork.FakeClock) {
	t.Helper()
	clock := clockwork.NewFakeClock()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return New(b, Config{Clock: clock, Logger: log, RestartGrace: grace}), clock
}

// runLessor runs the expiry loop until the test ends.
func runLessor(t *testing.T, ls *Lessor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ls.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func waitRevoked(t *testing.T, b *fakeBackend, want int64) {
	t.Helper()
	select {
	case id := <-b.revoked:
		if id != want {
			t.Fatalf("revoked lease %d, want %d", id, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("lease %d was not revoked", want)
	}
}

// waitArmed waits until the expiry loop waits on n timers, i.e. it has
// handled everything that was due.
func waitArmed(t *testing.T, clock *clockwork.FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, n); err != nil {
		t.Fatalf("expiry loop did not arm its timer: %v", err)
	}
}

func TestGrantTTL(t *testing.T) {
	tests := []struct {
		name    string
		ttl     int64
		wantTTL int64
		wantErr error
	}{
		{name: "negative raised to minimum", ttl: -5, wantTTL: DefaultMinTTL},
		{name: "zero raised to minimum", ttl: 0, wantTTL: DefaultMinTTL},
		{name: "one raised to minimum", ttl: 1, wantTTL: DefaultMinTTL},
		{name: "minimum", ttl: 2, wantTTL: 2},
		{name: "normal", ttl: 60, wantTTL: 60},
		{name: "maximum", ttl: MaxLeaseTTL, wantTTL: MaxLeaseTTL},
		{name: "too large", ttl: MaxLeaseTTL + 1, wantErr: ErrLeaseTTLTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFakeBackend()
			ls, _ := newTestLessor(t, b, 0)
			id, ttl, err := ls.Grant(7, tt.ttl)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Grant error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if id != 7 || ttl != tt.wantTTL {
				t.Fatalf("Grant = (%d, %d), want (7, %d)", id, ttl, tt.wantTTL)
			}
			if got := b.leases[7]; got != tt.wantTTL {
				t.Fatalf("persisted TTL = %d, want %d", got, tt.wantTTL)
			}
		})
	}
}

func TestGrantIDs(t *testing.T) {
	b := newFakeBackend()
	ls, _ := newTestLessor(t, b, 0)
	if _, _, err := ls.Grant(-3, 10); err != nil {
		t.Fatalf("Grant with a negative client ID: %v", err)
	}
	if _, _, err := ls.Grant(-3, 10); !errors.Is(err, ErrLeaseExists) {
		t.Fatalf("second Grant of the same ID: %v, want ErrLeaseExists", err)
	}
	seen := make(map[int64]bool)
	for range 100 {
		id, _, err := ls.Grant(0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if id <= 0 || seen[id] {
			t.Fatalf("server-chosen ID %d is not positive and unique", id)
		}
		seen[id] = true
	}
}

func TestRevoke(t *testing.T) {
	b := newFakeBackend()
	ls, _ := newTestLessor(t, b, 0)
	if err := ls.Revoke(1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("Revoke of unknown lease: %v, want ErrLeaseNotFound", err)
	}
	if _, _, err := ls.Grant(1, 10); err != nil {
		t.Fatal(err)
	}
	if err := ls.Revoke(1); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if b.has(1) {
		t.Fatal("lease still persisted after Revoke")
	}
	if _, err := ls.Renew(1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("Renew after Revoke: %v, want ErrLeaseNotFound", err)
	}
	if _, err := ls.TimeToLive(1, false); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("TimeToLive after Revoke: %v, want ErrLeaseNotFound", err)
	}

	// A failing engine leaves the lease in place.
	if _, _, err := ls.Grant(2, 10); err != nil {
		t.Fatal(err)
	}
	b.failErr = errors.New("disk on fire")
	if err := ls.Revoke(2); err == nil || errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("Revoke with a failing engine: %v", err)
	}
	if _, err := ls.TimeToLive(2, false); err != nil {
		t.Fatalf("lease gone after a failed Revoke: %v", err)
	}
}

func TestTimeToLiveAndRenew(t *testing.T) {
	b := newFakeBackend()
	ls, clock := newTestLessor(t, b, 0)
	if _, _, err := ls.Grant(5, 10); err != nil {
		t.Fatal(err)
	}
	b.keys[5] = []string{"a", "b"}

	steps := []struct {
		name    string
		advance time.Duration
		renew   bool
		wantTTL int64
	}{
		{name: "just granted", wantTTL: 10},
		{name: "truncated", advance: 1500 * time.Millisecond, wantTTL: 8},
		{name: "renewed", renew: true, wantTTL: 10},
		{name: "later", advance: 9 * time.Second, wantTTL: 1},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		if s.renew {
			ttl, err := ls.Renew(5)
			if err != nil || ttl != 10 {
				t.Fatalf("%s: Renew = (%d, %v), want (10, nil)", s.name, ttl, err)
			}
		}
		st, err := ls.TimeToLive(5, true)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		want := Status{ID: 5, TTL: s.wantTTL, GrantedTTL: 10, Keys: []string{"a", "b"}}
		if st.ID != want.ID || st.TTL != want.TTL || st.GrantedTTL != want.GrantedTTL || !slices.Equal(st.Keys, want.Keys) {
			t.Fatalf("%s: TimeToLive = %+v, want %+v", s.name, st, want)
		}
	}
	st, err := ls.TimeToLive(5, false)
	if err != nil || st.Keys != nil {
		t.Fatalf("TimeToLive without keys = %+v, %v", st, err)
	}
}

func TestRenewExpiredRevokes(t *testing.T) {
	b := newFakeBackend()
	ls, clock := newTestLessor(t, b, 0)
	if _, _, err := ls.Grant(9, 5); err != nil {
		t.Fatal(err)
	}
	clock.Advance(5 * time.Second)
	// Expired but not yet revoked: TimeToLive still answers, like etcd.
	st, err := ls.TimeToLive(9, false)
	if err != nil || st.TTL != 0 {
		t.Fatalf("TimeToLive of expired lease = %+v, %v", st, err)
	}
	if _, err := ls.Renew(9); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("Renew of expired lease: %v, want ErrLeaseNotFound", err)
	}
	waitRevoked(t, b, 9)
	if _, err := ls.TimeToLive(9, false); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("TimeToLive after expiry: %v", err)
	}
}

func TestExpiryLoop(t *testing.T) {
	b := newFakeBackend()
	ls, clock := newTestLessor(t, b, 0)
	runLessor(t, ls)

	// A long lease keeps a timer armed so waitArmed can tell when the loop
	// is idle again.
	if _, _, err := ls.Grant(100, 1000); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ls.Grant(1, 10); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ls.Grant(2, 20); err != nil {
		t.Fatal(err)
	}
	waitArmed(t, clock, 1)

	clock.Advance(6 * time.Second)
	if _, err := ls.Renew(1); err != nil { // lease 1 now expires at 16s
		t.Fatal(err)
	}
	clock.Advance(5 * time.Second) // 11s: the 10s timer fires, lease 1 was renewed
	waitArmed(t, clock, 1)
	if !b.has(1) {
		t.Fatal("renewed lease 1 was revoked")
	}

	clock.Advance(5 * time.Second) // 16s
	waitRevoked(t, b, 1)
	clock.Advance(4 * time.Second) // 20s
	waitRevoked(t, b, 2)
	waitArmed(t, clock, 1)
	if got := ls.Leases(); !slices.Equal(got, []int64{100}) {
		t.Fatalf("Leases = %v, want [100]", got)
	}
}

func TestExpiryLoopRetries(t *testing.T) {
	b := newFakeBackend()
	ls, clock := newTestLessor(t, b, 0)
	if _, _, err := ls.Grant(1, 5); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.failErr = errors.New("disk on fire")
	b.mu.Unlock()
	runLessor(t, ls)
	waitArmed(t, clock, 1)
	clock.Advance(5 * time.Second)
	waitArmed(t, clock, 1) // re-armed for the retry
	if !b.has(1) {
		t.Fatal("lease revoked although the engine failed")
	}
	b.mu.Lock()
	b.failErr = nil
	b.mu.Unlock()
	clock.Advance(retryInterval)
	waitRevoked(t, b, 1)
}

func TestGrantWakesLoop(t *testing.T) {
	b := newFakeBackend()
	ls, clock := newTestLessor(t, b, 0)
	runLessor(t, ls)
	if _, _, err := ls.Grant(1, 100); err != nil {
		t.Fatal(err)
	}
	waitArmed(t, clock, 1)
	// A shorter lease must not wait for the longer one's timer.
	if _, _, err := ls.Grant(2, 3); err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Second)
	waitRevoked(t, b, 2)
}

func TestRestartGivesFullTTL(t *testing.T) {
	b := newFakeBackend()
	b.leases[1] = 30
	b.leases[2] = 1 // below the minimum, as etcd raises it on recovery
	ls, clock := newTestLessor(t, b, time.Second)

	st, err := ls.TimeToLive(1, false)
	if err != nil || st.TTL != 31 || st.GrantedTTL != 30 {
		t.Fatalf("TimeToLive(1) = %+v, %v; want TTL 31 GrantedTTL 30", st, err)
	}
	st, err = ls.TimeToLive(2, false)
	if err != nil || st.GrantedTTL != DefaultMinTTL {
		t.Fatalf("TimeToLive(2) = %+v, %v; want GrantedTTL %d", st, err, DefaultMinTTL)
	}
	if got := ls.Leases(); !slices.Equal(got, []int64{2, 1}) {
		t.Fatalf("Leases = %v, want [2 1] (by expiry)", got)
	}

	runLessor(t, ls)
	waitArmed(t, clock, 1)
	clock.Advance(3 * time.Second)
	waitRevoked(t, b, 2)
	clock.Advance(28 * time.Second)
	waitRevoked(t, b, 1)
}

func TestRegrantAfterRevoke(t *testing.T) {
	b := newFakeBackend()
	ls, clock := newTestLessor(t, b, 0)
	runLessor(t, ls)
	if _, _, err := ls.Grant(1, 5); err != nil {
		t.Fatal(err)
	}
	if err := ls.Revoke(1); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, b, 1)
	if _, _, err := ls.Grant(1, 50); err != nil {
		t.Fatal(err)
	}
	// The first lease's deadline must not revoke the second one.
	clock.Advance(10 * time.Second)
	waitArmed(t, clock, 1)
	if !b.has(1) {
		t.Fatal("re-granted lease revoked at the old deadline")
	}
	clock.Advance(40 * time.Second)
	waitRevoked(t, b, 1)
}
