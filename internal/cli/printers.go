package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/herd-project/herd/api"
)

// Output formats of -o.
const (
	outputTable = ""
	outputWide  = "wide"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// checkOutputFormat returns a usage error for an unknown -o value.
func checkOutputFormat(format string) error {
	switch format {
	case outputTable, outputWide, outputJSON, outputYAML:
		return nil
	}
	return usageErrorf("-o %q: use wide, json or yaml", format)
}

// printObject writes v (an object or a list) as indented JSON or as YAML.
func printObject(w io.Writer, v any, format string) error {
	var out []byte
	var err error
	switch format {
	case outputJSON:
		out, err = json.MarshalIndent(v, "", "  ")
		out = append(out, '\n')
	case outputYAML:
		out, err = yaml.Marshal(v)
	default:
		return fmt.Errorf("unknown output format %q", format)
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", format, err)
	}
	_, err = w.Write(out)
	return err
}

// table is rows of cells under a header, written aligned.
type table struct {
	header []string
	rows   [][]string
}

func newTable(header ...string) *table { return &table{header: header} }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// write writes the table with every line starting with indent.
func (t *table) write(w io.Writer, indent string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	for _, row := range append([][]string{t.header}, t.rows...) {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = cleanCell(c)
		}
		if _, err := fmt.Fprintln(tw, indent+strings.Join(cells, "\t")); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// cleanCell keeps a value on one line and out of the column separators.
func cleanCell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

// tableOptions say how to print a list.
type tableOptions struct {
	now time.Time
	// wide adds the columns of -o wide.
	wide bool
	// namespaces adds a NAMESPACE column, for lists of all namespaces.
	namespaces bool
}

// withNamespace prepends the NAMESPACE column when o asks for it.
func (o tableOptions) withNamespace(ns string, cells ...string) []string {
	if o.namespaces {
		return append([]string{ns}, cells...)
	}
	return cells
}

func jobsTable(jobs []api.Job, o tableOptions) *table {
	header := o.withNamespace("NAMESPACE", "NAME", "TYPE", "STATUS", "GROUPS", "AGE")
	if o.wide {
		header = append(header, "PRIORITY", "MESSAGE")
	}
	t := newTable(header...)
	sorted := slices.Clone(jobs)
	slices.SortFunc(sorted, func(a, b api.Job) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, j := range sorted {
		row := o.withNamespace(j.Namespace, j.Name, string(j.Spec.Type), jobPhase(&j), jobGroups(&j), formatAge(o.now, j.CreatedAt))
		if o.wide {
			row = append(row, strconv.Itoa(j.Spec.Priority), j.Status.Message)
		}
		t.add(row...)
	}
	return t
}

func jobPhase(j *api.Job) string {
	if j.Status.Phase == "" {
		return string(api.JobPending)
	}
	return string(j.Status.Phase)
}

// jobGroups renders running/desired per group, in the job's group order:
// "web 3/3, cache 1/2".
func jobGroups(j *api.Job) string {
	parts := make([]string, 0, len(j.Spec.Groups))
	for _, g := range j.Spec.Groups {
		running, desired := 0, g.Count
		if s, ok := j.Status.Groups[g.Name]; ok {
			running, desired = s.Running, s.Desired
		}
		parts = append(parts, fmt.Sprintf("%s %d/%d", g.Name, running, desired))
	}
	return strings.Join(parts, ", ")
}

func allocsTable(allocs []api.Allocation, o tableOptions) *table {
	header := o.withNamespace("NAMESPACE", "NAME", "STATUS", "DESIRED", "NODE", "RESTARTS", "AGE")
	if o.wide {
		header = append(header, "UID", "ATTEMPT", "MESSAGE")
	}
	t := newTable(header...)
	for _, a := range sortedAllocs(allocs) {
		row := o.withNamespace(a.Namespace, a.Name, allocStatus(&a), string(a.Spec.DesiredStatus),
			orNone(a.Spec.Node), strconv.Itoa(allocRestarts(&a)), formatAge(o.now, a.CreatedAt))
		if o.wide {
			row = append(row, a.UID, strconv.Itoa(a.Spec.Attempt), allocMessage(&a))
		}
		t.add(row...)
	}
	return t
}

// sortedAllocs orders allocations by namespace, job, group and index, so
// that web.web[2] comes before web.web[10].
func sortedAllocs(allocs []api.Allocation) []api.Allocation {
	sorted := slices.Clone(allocs)
	slices.SortFunc(sorted, func(a, b api.Allocation) int {
		return cmp.Or(
			cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(a.Spec.Job, b.Spec.Job),
			cmp.Compare(a.Spec.Group, b.Spec.Group),
			cmp.Compare(a.Spec.Index, b.Spec.Index),
			cmp.Compare(a.Name, b.Name))
	})
	return sorted
}

func allocStatus(a *api.Allocation) string {
	if a.Status.ClientStatus == "" {
		return string(api.ClientPending)
	}
	return string(a.Status.ClientStatus)
}

func allocRestarts(a *api.Allocation) int {
	n := 0
	for _, ts := range a.Status.Tasks {
		n += ts.Restarts
	}
	return n
}

// allocMessage is the one line that best explains an allocation's state:
// why it cannot be placed, why it is to stop, or what its tasks said.
func allocMessage(a *api.Allocation) string {
	if a.Status.PlacementFailure != "" {
		return a.Status.PlacementFailure
	}
	if a.Spec.DesiredStatus == api.DesiredStop && a.Spec.DesiredReason != "" {
		return "stop: " + a.Spec.DesiredReason
	}
	var msgs []string
	for _, name := range sortedKeys(a.Status.Tasks) {
		if m := a.Status.Tasks[name].Message; m != "" {
			msgs = append(msgs, name+": "+m)
		}
	}
	return strings.Join(msgs, "; ")
}

func nodesTable(nodes []api.Node, o tableOptions) *table {
	header := []string{"NAME", "STATUS", "AVAILABILITY", "ADDRESS", "CPU", "MEMORY", "DRIVERS", "HEARTBEAT", "AGE"}
	if o.wide {
		header = append(header, "OS", "ARCH", "MESSAGE")
	}
	t := newTable(header...)
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b api.Node) int { return cmp.Compare(a.Name, b.Name) })
	for _, n := range sorted {
		row := []string{n.Name, nodeStatus(&n), string(n.Spec.Availability), n.Status.Address,
			formatCPU(n.Status.Allocatable.CPU), formatMemory(n.Status.Allocatable.Memory),
			strings.Join(n.Status.Drivers, ","), formatAge(o.now, n.Status.LastHeartbeat), formatAge(o.now, n.CreatedAt)}
		if o.wide {
			row = append(row, n.Status.Attributes[api.AttrOS], n.Status.Attributes[api.AttrArch], n.Status.Message)
		}
		t.add(row...)
	}
	return t
}

func nodeStatus(n *api.Node) string {
	if n.Status.Status == "" {
		return "unknown"
	}
	return string(n.Status.Status)
}

// eventsTable lists events oldest first. withObject adds the OBJECT column,
// which a report about one object leaves out.
func eventsTable(events []api.Event, o tableOptions, withObject bool) *table {
	header := o.withNamespace("NAMESPACE", "LAST-SEEN", "TYPE", "REASON")
	if withObject {
		header = append(header, "OBJECT")
	}
	header = append(header, "MESSAGE")
	if o.wide {
		header = append(header, "SOURCE")
	}
	t := newTable(header...)
	sorted := slices.Clone(events)
	slices.SortStableFunc(sorted, func(a, b api.Event) int { return a.Time.Compare(b.Time) })
	for _, e := range sorted {
		row := o.withNamespace(e.Namespace, formatAge(o.now, e.Time), string(e.Type), e.Reason)
		if withObject {
			row = append(row, objectRef(e.Kind, e.Name))
		}
		row = append(row, e.Message)
		if o.wide {
			row = append(row, e.Source)
		}
		t.add(row...)
	}
	return t
}

// objectRef names an object the way the CLI takes it: job/web,
// alloc/web.web[0], node/n1.
func objectRef(kind, name string) string {
	if kind == "" && name == "" {
		return ""
	}
	var prefix string
	switch kind {
	case api.KindJob:
		prefix = kindJobs.singular()
	case api.KindAllocation:
		prefix = kindAllocs.singular()
	case api.KindNode:
		prefix = kindNodes.singular()
	default:
		prefix = strings.ToLower(kind)
	}
	return prefix + "/" + name
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
