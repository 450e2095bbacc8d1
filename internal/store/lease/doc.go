// Package lease is herd store's lessor: it keeps the expiry clock of every
// lease the engine persists and revokes leases whose TTL ran out.
//
// The engine (package mvcc) is the source of truth for which leases exist and
// which keys are attached to them; a lease's deadline lives only in memory,
// exactly as in etcd. When the lessor starts it gives every persisted lease
// its full TTL again (plus an optional grace period), which is what etcd's
// lessor does when a member is promoted to leader after a restart.
//
// Behaviour follows etcd's lessor with its default settings: TTLs below the
// minimum are raised to it, TTLs above MaxLeaseTTL are refused, a keepalive
// of an expired lease revokes it and reports it as not found, and the
// remaining TTL is truncated to whole seconds.
package lease
