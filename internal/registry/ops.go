package registry

import (
	"github.com/herd-project/herd/api"
)

// OpType says what an Op does.
type OpType int

const (
	// OpCreate puts Object if its key does not exist.
	OpCreate OpType = iota + 1
	// OpUpdate puts Object if the key's mod_revision is ResourceVersion.
	OpUpdate
	// OpUpsert puts Object unconditionally.
	OpUpsert
	// OpDelete deletes the key; if ResourceVersion is set, only at that version.
	OpDelete
)

func (t OpType) String() string {
	switch t {
	case OpCreate:
		return "create"
	case OpUpdate:
		return "update"
	case OpUpsert:
		return "upsert"
	case OpDelete:
		return "delete"
	}
	return "unknown op"
}

// Op is one operation of a Commit. Build it with Create, Update, Upsert,
// Delete, PutHeartbeat or RecordEvent.
type Op struct {
	Type      OpType
	Kind      Kind
	Namespace string // empty for nodes and heartbeats
	Name      string
	// Object is the value to put: an api.Object, a *Heartbeat or an *api.Event.
	Object          any
	ResourceVersion string
}

// KindOf returns the kind an API object is stored as, decided by its Go
// type, or "" for a type the registry does not store.
func KindOf(obj api.Object) Kind {
	switch obj.(type) {
	case *api.Job:
		return Jobs
	case *api.Allocation:
		return Allocs
	case *api.Node:
		return Nodes
	case *api.Namespace:
		return Namespaces
	}
	return ""
}

// metaOf returns the metadata of a stored object, or nil for nil and for
// types the registry does not store.
func metaOf(obj api.Object) *api.Meta {
	switch o := obj.(type) {
	case nil:
		return nil
	case *api.Job:
		if o == nil {
			return nil
		}
	case *api.Allocation:
		if o == nil {
			return nil
		}
	case *api.Node:
		if o == nil {
			return nil
		}
	case *api.Namespace:
		if o == nil {
			return nil
		}
	default:
		// Not a stored type: Commit rejects it.
		return nil
	}
	return obj.GetMeta()
}

func objectOp(t OpType, obj api.Object) Op {
	op := Op{Type: t, Kind: KindOf(obj), Object: obj}
	if m := metaOf(obj); m != nil {
		op.Namespace, op.Name = m.Namespace, m.Name
		if t == OpUpdate {
			op.ResourceVersion = m.ResourceVersion
		}
	}
	return op
}

// Create puts obj if no object has its key. It fills in UID and CreatedAt
// when they are empty.
func Create(obj api.Object) Op { return objectOp(OpCreate, obj) }

// Update puts obj if the stored object is still at obj.ResourceVersion.
func Update(obj api.Object) Op { return objectOp(OpUpdate, obj) }

// Upsert puts obj whatever is stored.
func Upsert(obj api.Object) Op { return objectOp(OpUpsert, obj) }

// Delete deletes an object; with a non-empty resourceVersion only if the
// stored object is still at it.
func Delete(kind Kind, namespace, name, resourceVersion string) Op {
	return Op{Type: OpDelete, Kind: kind, Namespace: namespace, Name: name, ResourceVersion: resourceVersion}
}

// PutHeartbeat records a node's heartbeat.
func PutHeartbeat(node string, hb Heartbeat) Op {
	return Op{Type: OpUpsert, Kind: Heartbeats, Name: node, Object: &hb}
}

// RecordEvent stores an event (events are kept for a limited time). Commit
// names it after its time, which it sets to the registry's clock when zero,
// and a random suffix no other cached event has.
func RecordEvent(ev api.Event) Op {
	return Op{Type: OpCreate, Kind: Events, Object: &ev}
}
