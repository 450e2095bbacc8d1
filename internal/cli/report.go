package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herd-project/herd/api"
)

// report writes the multi-line reports of herd describe: "Key:  value"
// lines, aligned within each run of lines at the same place, section
// headings, and tables. The first write error sticks and is returned by
// flush.
type report struct {
	w   io.Writer
	tw  *tabwriter.Writer
	err error
}

func newReport(w io.Writer) *report {
	return &report{w: w, tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
}

// field writes "key:  value" at the given depth (two spaces each).
func (r *report) field(depth int, key, value string) {
	r.printf("%s%s:\t%s\n", strings.Repeat("  ", depth), key, cleanValue(value))
}

// heading writes a line that opens a section, such as "Tasks:".
func (r *report) heading(depth int, title string) {
	r.printf("%s%s:\n", strings.Repeat("  ", depth), title)
}

// blank separates sections.
func (r *report) blank() { r.printf("\n") }

// table writes t indented under the current heading, or <none>.
func (r *report) table(depth int, t *table) {
	indent := strings.Repeat("  ", depth)
	if len(t.rows) == 0 {
		r.printf("%s%s\n", indent, none)
		return
	}
	r.flushColumns()
	if r.err == nil {
		r.err = t.write(r.w, indent)
	}
}

func (r *report) printf(format string, args ...any) {
	if r.err == nil {
		_, r.err = fmt.Fprintf(r.tw, format, args...)
	}
}

// flushColumns ends the current run of aligned lines.
func (r *report) flushColumns() {
	if err := r.tw.Flush(); r.err == nil {
		r.err = err
	}
}

func (r *report) flush() error {
	r.flushColumns()
	return r.err
}

// cleanValue keeps a value on its line: newlines and tabs are shown
// escaped, as they would be written in a job file.
func cleanValue(s string) string {
	if s == "" {
		return none
	}
	return strings.NewReplacer("\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(s)
}

// shortDuration renders a configured duration without zero tails: 30m
// rather than 30m0s.
func shortDuration(d api.Duration) string {
	s := d.Std().String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// jobReport is what herd describe job shows.
type jobReport struct {
	job    *api.Job
	allocs []api.Allocation
	events []api.Event
}

func writeJobReport(w io.Writer, now time.Time, d jobReport) error {
	j := d.job
	r := newReport(w)
	r.field(0, "Name", j.Name)
	r.field(0, "Namespace", j.Namespace)
	r.field(0, "UID", j.UID)
	r.field(0, "Type", string(j.Spec.Type))
	r.field(0, "Priority", strconv.Itoa(j.Spec.Priority))
	r.field(0, "Status", jobPhase(j))
	if j.Status.Message != "" {
		r.field(0, "Message", j.Status.Message)
	}
	r.field(0, "Labels", formatMap(j.Labels, ", "))
	r.field(0, "Created", formatTime(now, j.CreatedAt))
	r.blank()

	r.heading(0, "Groups")
	for gi := range j.Spec.Groups {
		writeGroup(r, &j.Spec.Groups[gi], j.Spec.Type)
	}
	r.blank()

	r.heading(0, "Status")
	status := newTable("GROUP", "DESIRED", "PENDING", "RUNNING", "COMPLETE", "FAILED", "LOST")
	for _, name := range groupNames(j) {
		s, ok := j.Status.Groups[name]
		if !ok {
			// Not counted yet: only the desired count is known.
			if g, err := findGroup(j, name); err == nil {
				s.Desired = g.Count
			}
		}
		status.add(name, strconv.Itoa(s.Desired), strconv.Itoa(s.Pending), strconv.Itoa(s.Running),
			strconv.Itoa(s.Complete), strconv.Itoa(s.Failed), strconv.Itoa(s.Lost))
	}
	r.table(1, status)
	r.blank()

	r.heading(0, "Allocations")
	r.table(1, allocsTable(d.allocs, tableOptions{now: now}))
	r.blank()

	r.heading(0, "Events")
	r.table(1, eventsTable(d.events, tableOptions{now: now}, true))
	return r.flush()
}

// groupNames lists the groups of the job's spec, then any other group its
// status still counts (one just removed from the spec).
func groupNames(j *api.Job) []string {
	var names []string
	seen := map[string]bool{}
	for _, g := range j.Spec.Groups {
		names = append(names, g.Name)
		seen[g.Name] = true
	}
	for _, name := range sortedKeys(j.Status.Groups) {
		if !seen[name] {
			names = append(names, name)
		}
	}
	return names
}

func writeGroup(r *report, g *api.Group, jobType api.JobType) {
	r.heading(1, g.Name)
	r.field(2, "Count", strconv.Itoa(g.Count))
	rp := api.DefaultRestartPolicy(jobType)
	if g.RestartPolicy != nil {
		rp = *g.RestartPolicy
	}
	r.field(2, "Restart Policy", fmt.Sprintf("%d attempts in %s, delay %s, mode %s",
		rp.Attempts, shortDuration(rp.Interval), shortDuration(rp.Delay), rp.Mode))
	constraints := make([]string, len(g.Constraints))
	for i, c := range g.Constraints {
		constraints[i] = fmt.Sprintf("%s %s %s", c.Attribute, c.Operator, c.Value)
	}
	r.field(2, "Constraints", strings.Join(constraints, ", "))
	r.field(2, "Resources", formatResources(g.GroupResources()))
	r.heading(2, "Tasks")
	for _, t := range g.Tasks {
		r.heading(3, t.Name)
		r.field(4, "Driver", t.Driver)
		r.field(4, "Command", formatCommand(t.Config.Command, t.Config.Args))
		if t.Config.WorkingDir != "" {
			r.field(4, "Working Dir", t.Config.WorkingDir)
		}
		r.field(4, "Env", formatMap(t.Config.Env, ", "))
		r.field(4, "Resources", formatResources(t.Resources))
		r.field(4, "Kill Timeout", shortDuration(t.KillTimeout))
	}
}

// allocReport is what herd describe alloc shows.
type allocReport struct {
	alloc  *api.Allocation
	events []api.Event
}

func writeAllocReport(w io.Writer, now time.Time, d allocReport) error {
	a := d.alloc
	r := newReport(w)
	r.field(0, "Name", a.Name)
	r.field(0, "Namespace", a.Namespace)
	r.field(0, "UID", a.UID)
	r.field(0, "Job", fmt.Sprintf("%s (%s)", a.Spec.Job, a.Spec.JobType))
	r.field(0, "Group", a.Spec.Group)
	r.field(0, "Index", strconv.Itoa(a.Spec.Index))
	r.field(0, "Node", orNone(a.Spec.Node))
	attempt := strconv.Itoa(a.Spec.Attempt)
	if a.Spec.PreviousNode != "" {
		attempt += " (previous node " + a.Spec.PreviousNode + ")"
	}
	r.field(0, "Attempt", attempt)
	if !a.Spec.NotBefore.IsZero() {
		r.field(0, "Not Before", a.Spec.NotBefore.Format(time.RFC3339))
	}
	desired := string(a.Spec.DesiredStatus)
	if a.Spec.DesiredReason != "" {
		desired += " (" + a.Spec.DesiredReason + ")"
	}
	r.field(0, "Desired Status", desired)
	r.field(0, "Client Status", allocStatus(a))
	if a.Status.PlacementFailure != "" {
		r.field(0, "Placement", a.Status.PlacementFailure)
	}
	r.field(0, "Resources", formatResources(a.Spec.GroupSpec.GroupResources()))
	r.field(0, "Created", formatTime(now, a.CreatedAt))
	r.field(0, "Updated", formatTime(now, a.Status.UpdatedAt))
	r.blank()

	r.heading(0, "Tasks")
	for _, name := range allocTaskNames(a) {
		ts, reported := a.Status.Tasks[name]
		r.heading(1, name)
		if !reported {
			r.field(2, "State", "not reported yet")
			continue
		}
		state := string(ts.State)
		if ts.Failed {
			state += " (failed)"
		}
		r.field(2, "State", state)
		if ts.ExitCode != nil {
			r.field(2, "Exit Code", strconv.Itoa(*ts.ExitCode))
		}
		if ts.Signal != "" {
			r.field(2, "Signal", ts.Signal)
		}
		r.field(2, "Restarts", strconv.Itoa(ts.Restarts))
		if ts.PID != 0 {
			r.field(2, "PID", strconv.Itoa(ts.PID))
		}
		if len(ts.Ports) > 0 {
			r.field(2, "Ports", formatTaskPorts(ts.Ports))
		}
		r.field(2, "Started", formatTime(now, ts.StartedAt))
		r.field(2, "Finished", formatTime(now, ts.FinishedAt))
		if ts.Message != "" {
			r.field(2, "Message", ts.Message)
		}
	}
	r.blank()

	r.heading(0, "Events")
	r.table(1, eventsTable(mergeEvents(a.Status.Events, d.events), tableOptions{now: now}, false))
	return r.flush()
}

// formatTaskPorts lists host ports by port name: "admin=32769, http=32768".
func formatTaskPorts(ports map[string]int) string {
	parts := make([]string, 0, len(ports))
	for _, name := range sortedKeys(ports) {
		parts = append(parts, name+"="+strconv.Itoa(ports[name]))
	}
	return strings.Join(parts, ", ")
}

// allocTaskNames lists the tasks of the allocation's group in spec order,
// then any task only its status knows.
func allocTaskNames(a *api.Allocation) []string {
	var names []string
	seen := map[string]bool{}
	for _, t := range a.Spec.GroupSpec.Tasks {
		names = append(names, t.Name)
		seen[t.Name] = true
	}
	for _, name := range sortedKeys(a.Status.Tasks) {
		if !seen[name] {
			names = append(names, name)
		}
	}
	return names
}

// mergeEvents joins the events an allocation carries with those recorded
// about it, dropping the ones that appear in both.
func mergeEvents(lists ...[]api.Event) []api.Event {
	type key struct {
		t               time.Time
		reason, message string
	}
	seen := map[key]bool{}
	var out []api.Event
	for _, list := range lists {
		for _, e := range list {
			k := key{e.Time.UTC(), e.Reason, e.Message}
			if !seen[k] {
				seen[k] = true
				out = append(out, e)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b api.Event) int { return a.Time.Compare(b.Time) })
	return out
}

// nodeReport is what herd describe node shows.
type nodeReport struct {
	node   *api.Node
	allocs []api.Allocation
	events []api.Event
}

func writeNodeReport(w io.Writer, now time.Time, d nodeReport) error {
	n := d.node
	r := newReport(w)
	r.field(0, "Name", n.Name)
	r.field(0, "Status", nodeStatus(n))
	r.field(0, "Availability", string(n.Spec.Availability))
	r.field(0, "Address", n.Status.Address)
	r.field(0, "Agent ID", n.Status.AgentID)
	r.field(0, "Last Heartbeat", formatTime(now, n.Status.LastHeartbeat))
	r.field(0, "Created", formatTime(now, n.CreatedAt))
	if n.Status.Message != "" {
		r.field(0, "Message", n.Status.Message)
	}
	r.field(0, "Labels", formatMap(n.Labels, ", "))
	r.field(0, "Drivers", strings.Join(n.Status.Drivers, ", "))
	if len(n.Status.Attributes) == 0 {
		r.field(0, "Attributes", "")
	} else {
		r.heading(0, "Attributes")
		for _, k := range sortedKeys(n.Status.Attributes) {
			r.field(1, k, n.Status.Attributes[k])
		}
	}
	r.blank()

	var used api.Resources
	for _, a := range d.allocs {
		if !a.Status.ClientStatus.Terminal() {
			used = used.Add(a.Spec.GroupSpec.GroupResources())
		}
	}
	alloc := n.Status.Allocatable
	r.heading(0, "Resources")
	res := newTable("RESOURCE", "CAPACITY", "ALLOCATABLE", "ALLOCATED")
	res.add("cpu", formatCPU(n.Status.Capacity.CPU), formatCPU(alloc.CPU),
		formatCPU(used.CPU)+formatPercent(used.CPU, alloc.CPU))
	res.add("memory", formatMemory(n.Status.Capacity.Memory), formatMemory(alloc.Memory),
		formatMemory(used.Memory)+formatPercent(used.Memory, alloc.Memory))
	r.table(1, res)
	r.blank()

	r.heading(0, "Allocations")
	allocs := newTable("NAMESPACE", "NAME", "STATUS", "DESIRED", "CPU", "MEMORY", "AGE")
	for _, a := range sortedAllocs(d.allocs) {
		req := a.Spec.GroupSpec.GroupResources()
		allocs.add(a.Namespace, a.Name, allocStatus(&a), string(a.Spec.DesiredStatus),
			formatCPU(req.CPU), formatMemory(req.Memory), formatAge(now, a.CreatedAt))
	}
	r.table(1, allocs)
	r.blank()

	r.heading(0, "Events")
	r.table(1, eventsTable(d.events, tableOptions{now: now}, false))
	return r.flush()
}
