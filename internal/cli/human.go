package cli

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
)

// none stands for an absent value in tables and reports.
const none = "<none>"

// formatAge renders the time from t to now the way people read ages in a
// table: 5s, 3m, 2h, 4d. A zero t has no age.
func formatAge(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return formatDuration(now.Sub(t))
}

// formatDuration renders d in its largest whole unit: 5s, 3m, 2h, 4d.
// Negative durations (a clock behind the server's) count as 0s.
func formatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
}

// formatTime renders a point in time with its age, for reports.
func formatTime(now, t time.Time) string {
	if t.IsZero() {
		return none
	}
	return t.Format(time.RFC3339) + " (" + formatAge(now, t) + " ago)"
}

// binaryUnits are the suffixes of formatMemory, smallest first.
var binaryUnits = []string{"Ki", "Mi", "Gi", "Ti", "Pi"}

// formatMemory renders bytes in binary units: 512Mi, 2Gi, 1.5Gi, 900.
func formatMemory(bytes int64) string {
	if bytes < 1024 && bytes > -1024 {
		return strconv.FormatInt(bytes, 10)
	}
	value := float64(bytes)
	unit := ""
	for _, u := range binaryUnits {
		if value < 1024 && value > -1024 {
			break
		}
		value /= 1024
		unit = u
	}
	switch {
	case value == float64(int64(value)):
		return strconv.FormatInt(int64(value), 10) + unit
	case value < 10 && value > -10:
		return strconv.FormatFloat(value, 'f', 1, 64) + unit
	default:
		return strconv.FormatFloat(value, 'f', 0, 64) + unit
	}
}

// formatCPU renders millicores: whole cores as "2", the rest as "1500m".
func formatCPU(millicores int64) string {
	if millicores%1000 == 0 {
		return strconv.FormatInt(millicores/1000, 10)
	}
	return strconv.FormatInt(millicores, 10) + "m"
}

// formatResources renders a request or a capacity on one line.
func formatResources(r api.Resources) string {
	parts := []string{"cpu " + formatCPU(r.CPU), "memory " + formatMemory(r.Memory)}
	if len(r.Ports) > 0 {
		parts = append(parts, "ports "+formatPorts(r.Ports))
	}
	return strings.Join(parts, ", ")
}

// formatPorts renders ports as name=port pairs.
func formatPorts(ports []api.Port) string {
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = fmt.Sprintf("%s=%d", p.Name, p.Port)
	}
	return strings.Join(out, ",")
}

// formatPercent renders part of whole, or "" when whole is unknown.
func formatPercent(part, whole int64) string {
	if whole <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%d%%)", part*100/whole)
}

// formatCommand renders a command and its arguments the way a shell would
// need them, quoting arguments that hold spaces or quotes.
func formatCommand(cmd string, args []string) string {
	words := append([]string{cmd}, args...)
	for i, w := range words {
		words[i] = shellQuote(w)
	}
	return strings.Join(words, " ")
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`;&|<>*?()[]{}#~!") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// formatMap renders a map as sorted key=value pairs joined by sep, or
// <none>.
func formatMap(m map[string]string, sep string) string {
	if len(m) == 0 {
		return none
	}
	return strings.Join(sortedPairs(m), sep)
}

func sortedPairs(m map[string]string) []string {
	pairs := make([]string, 0, len(m))
	for k, v := range m {
		pairs = append(pairs, k+"="+v)
	}
	sort.Strings(pairs)
	return pairs
}

// orNone returns s, or <none> when it is empty.
func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

// oneLine replaces newlines so that a message cannot break a table row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
