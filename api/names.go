package api

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// AllocName is the deterministic name of a group's index-th allocation.
func AllocName(job, group string, index int) string {
	return job + "." + group + "[" + strconv.Itoa(index) + "]"
}

// ParseAllocName splits an allocation name into job, group and index.
func ParseAllocName(name string) (job, group string, index int, err error) {
	open := strings.LastIndexByte(name, '[')
	if open < 0 || !strings.HasSuffix(name, "]") {
		return "", "", 0, fmt.Errorf("allocation name %q: want <job>.<group>[<index>]", name)
	}
	index, err = strconv.Atoi(name[open+1 : len(name)-1])
	if err != nil || index < 0 {
		return "", "", 0, fmt.Errorf("allocation name %q: index must be a non-negative integer", name)
	}
	dot := strings.LastIndexByte(name[:open], '.')
	if dot <= 0 || dot == open-1 {
		return "", "", 0, fmt.Errorf("allocation name %q: want <job>.<group>[<index>]", name)
	}
	return name[:dot], name[dot+1 : open], index, nil
}

// nameRE is the shape of job, group, task, node and namespace names: DNS
// labels (lower case letters, digits and '-'), as in Kubernetes, so that they
// can later become DNS names.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// MaxNameLength bounds names, as DNS labels are bounded.
const MaxNameLength = 63

// CheckName returns a problem with name, or "".
func CheckName(name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > MaxNameLength:
		return fmt.Sprintf("must be at most %d characters", MaxNameLength)
	case !nameRE.MatchString(name):
		return "must consist of lower case letters, digits and '-', and start and end with a letter or digit"
	}
	return ""
}

// nodeNameRE allows dots too, since node names are often host names.
var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)

// CheckNodeName returns a problem with a node name, or "".
func CheckNodeName(name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > 253:
		return "must be at most 253 characters"
	case !nodeNameRE.MatchString(name):
		return "must consist of lower case letters, digits, '-' and '.', and start and end with a letter or digit"
	}
	return ""
}
