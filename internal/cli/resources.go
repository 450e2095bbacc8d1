package cli

import "strings"

// resourceKind is a kind of object as the CLI names it.
type resourceKind string

const (
	kindJobs   resourceKind = "jobs"
	kindAllocs resourceKind = "allocs"
	kindNodes  resourceKind = "nodes"
	kindEvents resourceKind = "events"
)

// kindNames maps every name a user may type for a kind to the kind.
var kindNames = map[string]resourceKind{
	"job": kindJobs, "jobs": kindJobs,
	"alloc": kindAllocs, "allocs": kindAllocs, "allocation": kindAllocs, "allocations": kindAllocs,
	"node": kindNodes, "nodes": kindNodes,
	"event": kindEvents, "events": kindEvents,
}

// singular is the kind's name in object references such as job/web.
func (k resourceKind) singular() string { return strings.TrimSuffix(string(k), "s") }

// parseKind reads a kind a user typed; allowed lists the kinds the command
// supports.
func parseKind(s string, allowed ...resourceKind) (resourceKind, error) {
	k, ok := kindNames[strings.ToLower(s)]
	if ok {
		for _, a := range allowed {
			if a == k {
				return k, nil
			}
		}
	}
	return "", usageErrorf("unknown resource type %q: use one of %s", s, joinKinds(allowed))
}

// kindAndName reads "KIND NAME", "KIND/NAME" or, when the name is optional,
// "KIND". The name is "" when absent.
func kindAndName(args []string, nameRequired bool, allowed ...resourceKind) (resourceKind, string, error) {
	if len(args) == 0 {
		return "", "", usageErrorf("name a resource type (%s)", joinKinds(allowed))
	}
	kindArg, name := args[0], ""
	if before, after, ok := strings.Cut(args[0], "/"); ok {
		if len(args) > 1 {
			return "", "", usageErrorf("give the name either as %s or as a separate argument, not both", args[0])
		}
		kindArg, name = before, after
		if name == "" {
			return "", "", usageErrorf("%q names no object after the '/'", args[0])
		}
	} else if len(args) > 1 {
		name = args[1]
	}
	if len(args) > 2 {
		return "", "", usageErrorf("too many arguments: %s", strings.Join(args[2:], " "))
	}
	kind, err := parseKind(kindArg, allowed...)
	if err != nil {
		return "", "", err
	}
	if nameRequired && name == "" {
		return "", "", usageErrorf("name the %s", kind.singular())
	}
	return kind, name, nil
}

func joinKinds(kinds []resourceKind) string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}
