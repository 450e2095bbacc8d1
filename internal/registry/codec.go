package registry

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
)

// namespaced reports whether objects of kind live under a namespace in
// their key.
func (k Kind) namespaced() bool { return k == Jobs || k == Allocs }

// known reports whether k is one of the kinds the registry stores.
func (k Kind) known() bool {
	switch k {
	case Jobs, Allocs, Nodes, Namespaces, Heartbeats, Events:
		return true
	}
	return false
}

// allKinds lists every stored kind.
var allKinds = []Kind{Jobs, Allocs, Nodes, Namespaces, Heartbeats, Events}

// cacheKey is the key of an object within its kind's cache map.
func cacheKey(kind Kind, namespace, name string) string {
	if kind.namespaced() {
		return Key(namespace, name)
	}
	return name
}

// storeKey is the store key of an object.
func (r *Registry) storeKey(kind Kind, namespace, name string) string {
	return r.prefix + string(kind) + "/" + cacheKey(kind, namespace, name)
}

// parseKey splits a store key into its kind and cache key; ok is false for
// keys under the prefix that are not the registry's.
func parseKey(prefix, key string) (kind Kind, ckey string, ok bool) {
	rest, found := strings.CutPrefix(key, prefix)
	if !found {
		return "", "", false
	}
	k, ckey, found := strings.Cut(rest, "/")
	kind = Kind(k)
	if !found || ckey == "" || !kind.known() {
		return "", "", false
	}
	if kind.namespaced() {
		ns, name, found := strings.Cut(ckey, "/")
		if !found || ns == "" || name == "" {
			return "", "", false
		}
	}
	return kind, ckey, true
}

// eventName is an event's key within the events prefix: its time in unix
// nanoseconds, zero-padded so that keys sort by time, and a random suffix
// that keeps events recorded in the same nanosecond apart.
func eventName(t time.Time) string {
	nanos := t.UnixNano()
	if nanos < 0 {
		nanos = 0
	}
	return fmt.Sprintf("%020d-%04x", nanos, rand.N(1<<16))
}

// encode returns the stored JSON of an op's object. ResourceVersion is never
// stored: it is the key's mod_revision, set when the value is read back.
func encode(obj any) ([]byte, error) {
	switch o := obj.(type) {
	case *api.Job:
		c := *o
		c.ResourceVersion = ""
		return json.Marshal(&c)
	case *api.Allocation:
		c := *o
		c.ResourceVersion = ""
		return json.Marshal(&c)
	case *api.Node:
		c := *o
		c.ResourceVersion = ""
		return json.Marshal(&c)
	case *api.Namespace:
		c := *o
		c.ResourceVersion = ""
		return json.Marshal(&c)
	case *Heartbeat:
		return json.Marshal(o)
	case *api.Event:
		return json.Marshal(o)
	default:
		return nil, fmt.Errorf("registry: cannot store a %T", obj)
	}
}

// decode parses a stored value of kind into its object (a pointer) and
// sets its resource version to modRev.
func decode(kind Kind, value []byte, modRev int64) (any, error) {
	rv := strconv.FormatInt(modRev, 10)
	switch kind {
	case Jobs:
		o := &api.Job{}
		if err := json.Unmarshal(value, o); err != nil {
			return nil, err
		}
		o.ResourceVersion = rv
		return o, nil
	case Allocs:
		o := &api.Allocation{}
		if err := json.Unmarshal(value, o); err != nil {
			return nil, err
		}
		o.ResourceVersion = rv
		return o, nil
	case Nodes:
		o := &api.Node{}
		if err := json.Unmarshal(value, o); err != nil {
			return nil, err
		}
		o.ResourceVersion = rv
		return o, nil
	case Namespaces:
		o := &api.Namespace{}
		if err := json.Unmarshal(value, o); err != nil {
			return nil, err
		}
		o.ResourceVersion = rv
		return o, nil
	case Heartbeats:
		o := &Heartbeat{}
		if err := json.Unmarshal(value, o); err != nil {
			return nil, err
		}
		o.Revision = modRev
		return o, nil
	case Events:
		o := &api.Event{}
		if err := json.Unmarshal(value, o); err != nil {
			return nil, err
		}
		return o, nil
	}
	return nil, fmt.Errorf("registry: unknown kind %q", kind)
}

// modRevision is the store revision a cached object was read at (0 for
// events, which never change).
func modRevision(obj any) int64 {
	switch o := obj.(type) {
	case api.Object:
		rv, _ := strconv.ParseInt(o.GetMeta().ResourceVersion, 10, 64)
		return rv
	case *Heartbeat:
		return o.Revision
	}
	return 0
}

// parseResourceVersion parses a resource version as the store revision it
// stands for.
func parseResourceVersion(rv string) (int64, error) {
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("registry: resourceVersion %q is not a positive integer", rv)
	}
	return n, nil
}
