package mvcc

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

var bucketAlarm = []byte("alarm")

// Alarm is a raised alarm: the member it concerns and its type (etcd's
// AlarmType). Alarms are server state that must survive a restart, as in etcd.
type Alarm struct {
	Member uint64
	Type   int32
}

func (a Alarm) key() []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, a.Member)
	binary.BigEndian.PutUint32(k[8:], uint32(a.Type))
	return k
}

// SetAlarm durably raises (raised) or clears an alarm.
func (s *Store) SetAlarm(a Alarm, raised bool) error {
	s.committer.diskMu.Lock()
	defer s.committer.diskMu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketAlarm)
		if err != nil {
			return err
		}
		if raised {
			return b.Put(a.key(), nil)
		}
		return b.Delete(a.key())
	})
	if err != nil {
		return fmt.Errorf("mvcc: save alarm: %w", err)
	}
	return nil
}

// Alarms lists the raised alarms.
func (s *Store) Alarms() ([]Alarm, error) {
	var out []Alarm
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAlarm)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			if len(k) != 12 {
				return fmt.Errorf("bad alarm record %x", k)
			}
			out = append(out, Alarm{Member: binary.BigEndian.Uint64(k), Type: int32(binary.BigEndian.Uint32(k[8:]))})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("mvcc: read alarms: %w", err)
	}
	return out, nil
}
