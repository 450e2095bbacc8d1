// Package mvcc is herd store's multi-version key-value engine.
//
// Every change gets a revision (main, sub) exactly as in etcd: main is the
// store-wide counter bumped once per write transaction, sub numbers the
// changes inside it. History is kept in bbolt, keyed by revision, until it is
// compacted; an in-memory index maps each key to its revisions.
//
// Writers are serialised by one lock, apply their changes to the index at
// once, and wait for a group commit: one goroutine writes every pending
// transaction to bbolt in a single fsync'd commit and only then acknowledges
// them. Readers see the latest durable revision, so nothing a client reads can
// be lost by a crash.
package mvcc

import (
	"errors"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Errors returned by the engine. The gRPC layer maps them to etcd's errors.
var (
	ErrCompacted     = errors.New("mvcc: required revision has been compacted")
	ErrFutureRev     = errors.New("mvcc: required revision is a future revision")
	ErrLeaseNotFound = errors.New("mvcc: lease not found")
	ErrLeaseExists   = errors.New("mvcc: lease already exists")
	ErrClosed        = errors.New("mvcc: store closed")
)

// RangeOptions narrows a Range.
type RangeOptions struct {
	// Limit caps the number of returned KVs; 0 means no limit.
	Limit int64
	// Rev reads the store as of this revision; 0 means the latest.
	Rev int64
	// Count returns only the number of keys, no KVs.
	Count bool
}

// RangeResult is what a Range returns.
type RangeResult struct {
	// KVs are sorted by key, ascending.
	KVs []*mvccpb.KeyValue
	// Rev is the store's revision at the time of the read (not RangeOptions.Rev).
	Rev int64
	// Count is the number of keys in the range, regardless of Limit.
	Count int64
}

// Notifier receives committed changes in revision order, after they are
// durable. Put events carry the full KeyValue; delete events carry a KeyValue
// with only Key and ModRevision set. PrevKv is never set. Notify must not
// block for long: it runs on the commit path.
type Notifier interface {
	Notify(rev int64, events []*mvccpb.Event)
}

// Lease is a persisted lease record.
type Lease struct {
	ID  int64
	TTL int64 // seconds, as granted
}

// HashKVResult is the digest of the key space at a revision.
type HashKVResult struct {
	Hash            uint32
	CompactRevision int64
	HashRevision    int64
}
