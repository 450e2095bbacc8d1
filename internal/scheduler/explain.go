package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// explain summarises why none of total nodes could take an allocation:
// "0/3 nodes eligible: 2 lacked memory, 1 draining". Reasons are counted
// once per node (the first filter that rejected it) and listed by count,
// most frequent first, then by reason.
func explain(total int, rejections map[string]int) string {
	if total == 0 {
		return "0/0 nodes eligible: no nodes registered"
	}
	type count struct {
		reason string
		nodes  int
	}
	counts := make([]count, 0, len(rejections))
	for reason, nodes := range rejections {
		counts = append(counts, count{reason, nodes})
	}
	slices.SortFunc(counts, func(x, y count) int {
		return cmp.Or(cmp.Compare(y.nodes, x.nodes), cmp.Compare(x.reason, y.reason))
	})
	var b strings.Builder
	fmt.Fprintf(&b, "0/%d nodes eligible: ", total)
	for i, c := range counts {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s", c.nodes, c.reason)
	}
	return b.String()
}
