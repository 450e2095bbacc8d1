// Package watch delivers the store's committed changes to watchers.
//
// A Hub is the engine's mvcc.Notifier: the engine hands it every committed
// revision, in order, and the hub fans the events out to watchers. A watcher
// covers one key, a key range or every key from a key on, from a start
// revision. Watchers belong to a Stream; each stream has one bounded queue of
// responses that its consumer (a gRPC Watch stream) drains.
//
// A watcher is synced when it has been given everything up to the hub's
// revision; Notify pushes new events to it directly. Notify never waits for a
// consumer: when a stream's queue is full, the watchers that had events for it
// become unsynced. A background loop replays their missed revisions from the
// engine's history, in bounded chunks and once the consumer has made room,
// and moves each watcher back to the synced set under the lock Notify takes,
// so nothing is skipped or delivered twice and revisions stay in order. A
// watcher whose start revision is already past starts unsynced the same way;
// one whose next revision has been compacted gets a compaction notice instead.
//
// The semantics (watch IDs, filters, progress, compaction) follow etcd's
// watchable store, so that the gRPC layer can answer exactly as etcd does.
package watch
