package etcdserver

import (
	"sort"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/herd-project/herd/internal/store/mvcc"
)

// alarmDisk keeps alarms across restarts, as etcd does.
type alarmDisk interface {
	SetAlarm(a mvcc.Alarm, raised bool) error
}

// alarmStore holds the raised alarms, written through to disk.
type alarmStore struct {
	mu     sync.Mutex
	disk   alarmDisk
	alarms map[pb.AlarmType]map[uint64]*pb.AlarmMember
}

// load starts the store from the alarms on disk.
func (a *alarmStore) load(disk alarmDisk, saved []mvcc.Alarm) {
	a.disk = disk
	for _, al := range saved {
		a.raise(al.Member, pb.AlarmType(al.Type))
	}
}

func (a *alarmStore) raise(member uint64, t pb.AlarmType) (m *pb.AlarmMember, isNew bool) {
	if a.alarms == nil {
		a.alarms = make(map[pb.AlarmType]map[uint64]*pb.AlarmMember)
	}
	set := a.alarms[t]
	if set == nil {
		set = make(map[uint64]*pb.AlarmMember)
		a.alarms[t] = set
	}
	if m := set[member]; m != nil {
		return m, false
	}
	m = &pb.AlarmMember{MemberID: member, Alarm: t}
	set[member] = m
	return m, true
}

// activate raises an alarm and returns it, or the one already raised.
func (a *alarmStore) activate(member uint64, t pb.AlarmType) (*pb.AlarmMember, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m, isNew := a.raise(member, t)
	if isNew && a.disk != nil {
		if err := a.disk.SetAlarm(mvcc.Alarm{Member: member, Type: int32(t)}, true); err != nil {
			delete(a.alarms[t], member)
			return nil, err
		}
	}
	return m, nil
}

// deactivate clears an alarm and returns it, or nil if it was not raised.
func (a *alarmStore) deactivate(member uint64, t pb.AlarmType) (*pb.AlarmMember, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.alarms[t][member]
	if m == nil {
		return nil, nil
	}
	if a.disk != nil {
		if err := a.disk.SetAlarm(mvcc.Alarm{Member: member, Type: int32(t)}, false); err != nil {
			return nil, err
		}
	}
	delete(a.alarms[t], member)
	return m, nil
}

// get lists the alarms of type t (every type for NONE), in a fixed order.
func (a *alarmStore) get(t pb.AlarmType) []*pb.AlarmMember {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*pb.AlarmMember
	for at, set := range a.alarms {
		if t != pb.AlarmType_NONE && at != t {
			continue
		}
		for _, m := range set {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Alarm != out[j].Alarm {
			return out[i].Alarm < out[j].Alarm
		}
		return out[i].MemberID < out[j].MemberID
	})
	return out
}

func (a *alarmStore) has(t pb.AlarmType) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.alarms[t]) > 0
}
