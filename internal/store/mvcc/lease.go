package mvcc

import (
	"sort"
	"sync"
)

// leaseTable is the engine's view of leases: which exist, with what TTL, and
// which keys are attached to each. Expiry timing is not the engine's concern.
type leaseTable struct {
	mu       sync.RWMutex
	leases   map[int64]*leaseEntry
	keyLease map[string]int64
}

type leaseEntry struct {
	ttl  int64
	keys map[string]struct{}
}

func newLeaseTable() leaseTable {
	return leaseTable{leases: make(map[int64]*leaseEntry), keyLease: make(map[string]int64)}
}

func (lt *leaseTable) exists(id int64) bool {
	lt.mu.RLock()
	defer lt.mu.RUnlock()
	_, ok := lt.leases[id]
	return ok
}

func (lt *leaseTable) grant(id, ttl int64) bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if _, ok := lt.leases[id]; ok {
		return false
	}
	lt.leases[id] = &leaseEntry{ttl: ttl, keys: make(map[string]struct{})}
	return true
}

// revoke removes the lease and returns its keys, sorted.
func (lt *leaseTable) revoke(id int64) ([]string, bool) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	l, ok := lt.leases[id]
	if !ok {
		return nil, false
	}
	delete(lt.leases, id)
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
		delete(lt.keyLease, k)
	}
	sort.Strings(keys)
	return keys, true
}

// attach is used at restore; false if the lease does not exist.
func (lt *leaseTable) attach(id int64, key string) bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	l, ok := lt.leases[id]
	if !ok {
		return false
	}
	l.keys[key] = struct{}{}
	lt.keyLease[key] = id
	return true
}

// setKeyLease moves key to lease id (0: no lease).
func (lt *leaseTable) setKeyLease(key string, id int64) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if old, ok := lt.keyLease[key]; ok {
		if old == id {
			return
		}
		if l, ok := lt.leases[old]; ok {
			delete(l.keys, key)
		}
		delete(lt.keyLease, key)
	}
	if id == 0 {
		return
	}
	if l, ok := lt.leases[id]; ok {
		l.keys[key] = struct{}{}
		lt.keyLease[key] = id
	}
}

// Leases lists the persisted leases, by ID.
func (s *Store) Leases() []Lease {
	lt := &s.leases
	lt.mu.RLock()
	defer lt.mu.RUnlock()
	out := make([]Lease, 0, len(lt.leases))
	for id, l := range lt.leases {
		out = append(out, Lease{ID: id, TTL: l.ttl})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// LeaseKeys lists the keys attached to a lease, sorted.
func (s *Store) LeaseKeys(id int64) []string {
	lt := &s.leases
	lt.mu.RLock()
	defer lt.mu.RUnlock()
	l, ok := lt.leases[id]
	if !ok {
		return nil
	}
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
