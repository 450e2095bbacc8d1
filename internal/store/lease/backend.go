package lease

import (
	"errors"

	"github.com/herd-project/herd/internal/store/mvcc"
)

// NewStoreBackend returns the Backend of an engine: each grant and revocation
// is one write transaction of its own.
func NewStoreBackend(s *mvcc.Store) Backend { return storeBackend{s} }

type storeBackend struct{ s *mvcc.Store }

func (b storeBackend) GrantLease(id, ttl int64) error {
	t := b.s.Write()
	err := t.GrantLease(id, ttl)
	return errors.Join(err, t.End())
}

func (b storeBackend) RevokeLease(id int64) error {
	t := b.s.Write()
	err := t.RevokeLease(id)
	return errors.Join(err, t.End())
}

func (b storeBackend) Leases() []mvcc.Lease        { return b.s.Leases() }
func (b storeBackend) LeaseKeys(id int64) []string { return b.s.LeaseKeys(id) }
