// Package conformance is herd store's differential conformance suite.
//
// herd store claims to be compatible with etcd's v3 gRPC API. This package
// makes that claim checkable: every test starts a real etcd (embedded in the
// test process) and the system under test side by side, sends both the same
// requests, and compares the responses field by field after clearing the
// fields that legitimately differ between two clusters (cluster ID, member
// ID, raft term).
//
// The tests cover hand-written scenarios for every API feature (KV, Txn,
// Compact, Watch, Lease, Maintenance, Cluster) and a seeded random generator
// of operation sequences whose failures are shrunk to a minimal, replayable
// sequence. See README.md for how to run the suite and what it compares.
//
// The system under test is herd's server by default. Setting
// HERD_CONFORMANCE_TARGET=etcd runs the suite against a second embedded etcd
// instead, which must produce no difference at all and so validates the
// harness itself.
package conformance
