package etcdserver

import (
	"bytes"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/herd-project/herd/internal/store/mvcc"
)

// memKV is an in-memory stand-in for one write transaction of the engine,
// with the engine's documented semantics for the latest revision: enough to
// test request handling without a database. History is not kept; a range
// at an older revision reads the latest state.
type memKV struct {
	kvs        map[string]*mvccpb.KeyValue
	leases     map[int64]bool
	beginRev   int64
	compactRev int64
	changed    bool
}

func newMemKV(rev int64) *memKV {
	return &memKV{kvs: make(map[string]*mvccpb.KeyValue), leases: make(map[int64]bool), beginRev: rev}
}

// commit starts the next transaction.
func (m *memKV) commit() {
	if m.changed {
		m.beginRev++
	}
	m.changed = false
}

func (m *memKV) Rev() int64 {
	if m.changed {
		return m.beginRev + 1
	}
	return m.beginRev
}

func (m *memKV) LeaseExists(id int64) bool { return m.leases[id] }

// keysIn lists the keys in [key, end) in order, with the engine's meaning
// of a nil end (one key) and "\x00" (every key from key on).
func (m *memKV) keysIn(key, end []byte) []string {
	var keys []string
	for k := range m.kvs {
		kb := []byte(k)
		switch {
		case end == nil:
			if !bytes.Equal(kb, key) {
				continue
			}
		case len(end) == 1 && end[0] == 0:
			if bytes.Compare(kb, key) < 0 {
				continue
			}
		default:
			if bytes.Compare(kb, key) < 0 || bytes.Compare(kb, end) >= 0 {
				continue
			}
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (m *memKV) Range(key, end []byte, ro mvcc.RangeOptions) (*mvcc.RangeResult, error) {
	if ro.Rev > m.Rev() {
		return nil, mvcc.ErrFutureRev
	}
	if ro.Rev > 0 && ro.Rev < m.compactRev {
		return nil, mvcc.ErrCompacted
	}
	keys := m.keysIn(key, end)
	rr := &mvcc.RangeResult{Rev: m.Rev(), Count: int64(len(keys))}
	if ro.Count {
		return rr, nil
	}
	for i, k := range keys {
		if ro.Limit > 0 && int64(i) >= ro.Limit {
			break
		}
		rr.KVs = append(rr.KVs, m.kvs[k])
	}
	return rr, nil
}

func (m *memKV) Put(key, value []byte, lease int64) error {
	if lease != 0 && !m.leases[lease] {
		return mvcc.ErrLeaseNotFound
	}
	m.changed = true
	rev := m.beginRev + 1
	kv := &mvccpb.KeyValue{Key: bytes.Clone(key), Value: bytes.Clone(value), CreateRevision: rev, ModRevision: rev, Version: 1, Lease: lease}
	if old := m.kvs[string(key)]; old != nil {
		kv.CreateRevision = old.CreateRevision
		kv.Version = old.Version + 1
	}
	m.kvs[string(key)] = kv
	return nil
}

func (m *memKV) DeleteRange(key, end []byte) int64 {
	keys := m.keysIn(key, end)
	for _, k := range keys {
		delete(m.kvs, k)
	}
	if len(keys) > 0 {
		m.changed = true
	}
	return int64(len(keys))
}

// put is a test shorthand that commits one put.
func (m *memKV) put(key, value string, lease int64) {
	if err := m.Put([]byte(key), []byte(value), lease); err != nil {
		panic(err)
	}
	m.commit()
}
