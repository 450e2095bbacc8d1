package etcdserver

import (
	"sort"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// alarmStore holds the raised alarms in memory. etcd persists them; here they
// last until the server stops.
type alarmStore struct {
	mu     sync.Mutex
	alarms map[pb.AlarmType]map[uint64]*pb.AlarmMember
}

// activate raises an alarm and returns it, or the one already raised.
func (a *alarmStore) activate(member uint64, t pb.AlarmType) *pb.AlarmMember {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.alarms == nil {
		a.alarms = make(map[pb.AlarmType]map[uint64]*pb.AlarmMember)
	}
	set := a.alarms[t]
	if set == nil {
		set = make(map[uint64]*pb.AlarmMember)
		a.alarms[t] = set
	}
	if m := set[member]; m != nil {
		return m
	}
	m := &pb.AlarmMember{MemberID: member, Alarm: t}
	set[member] = m
	return m
}

// deactivate clears an alarm and returns it, or nil if it was not raised.
func (a *alarmStore) deactivate(member uint64, t pb.AlarmType) *pb.AlarmMember {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.alarms[t][member]
	if m != nil {
		delete(a.alarms[t], member)
	}
	return m
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
