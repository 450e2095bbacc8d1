package api

import (
	"fmt"
	"strings"
)

// FieldError is one problem with one field of an object.
type FieldError struct {
	// Field is the path of the field, such as "spec.groups[0].tasks[1].resources.memory".
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e FieldError) String() string { return e.Field + ": " + e.Message }

// FieldErrors lists every problem found in an object.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.String()
	}
	return strings.Join(lines, "; ")
}

// Err returns es as an error, or nil when it is empty.
func (es FieldErrors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

type validator struct{ errs FieldErrors }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) name(field, name string) {
	if p := CheckName(name); p != "" {
		v.add(field, "%s", p)
	}
}

// Defaults fills in the fields a job file may leave out: namespace, priority,
// restart policy and kill timeout. Validate expects a defaulted job.
func (j *Job) Defaults() {
	if j.Namespace == "" {
		j.Namespace = DefaultNamespace
	}
	if j.Spec.Type == "" {
		j.Spec.Type = JobService
	}
	if j.Spec.Priority == 0 {
		j.Spec.Priority = 50
	}
	for gi := range j.Spec.Groups {
		g := &j.Spec.Groups[gi]
		if g.RestartPolicy == nil {
			rp := DefaultRestartPolicy(j.Spec.Type)
			g.RestartPolicy = &rp
		}
		if g.RestartPolicy.Mode == "" {
			g.RestartPolicy.Mode = RestartFail
		}
		for ti := range g.Tasks {
			t := &g.Tasks[ti]
			if t.Driver == "" {
				t.Driver = "exec"
			}
			if t.KillTimeout == 0 {
				t.KillTimeout = DefaultKillTimeout
			}
		}
	}
}

// DefaultKillTimeout is the wait between SIGTERM and SIGKILL.
const DefaultKillTimeout = Duration(5_000_000_000)

// MaxCount bounds a group's count.
const MaxCount = 10000

// Validate returns every problem with a defaulted job, each with its field
// path, or nil.
func (j *Job) Validate() error {
	v := &validator{}
	v.name("metadata.name", j.Name)
	v.name("metadata.namespace", j.Namespace)
	switch j.Spec.Type {
	case JobService, JobBatch:
	default:
		v.add("spec.type", "must be %q or %q, not %q", JobService, JobBatch, j.Spec.Type)
	}
	if j.Spec.Priority < 1 || j.Spec.Priority > 100 {
		v.add("spec.priority", "must be between 1 and 100")
	}
	if len(j.Spec.Groups) == 0 {
		v.add("spec.groups", "must have at least one group")
	}
	groups := map[string]bool{}
	for gi := range j.Spec.Groups {
		g := &j.Spec.Groups[gi]
		gp := fmt.Sprintf("spec.groups[%d]", gi)
		v.name(gp+".name", g.Name)
		if groups[g.Name] && g.Name != "" {
			v.add(gp+".name", "duplicate group name %q", g.Name)
		}
		groups[g.Name] = true
		if len(j.Name)+len(g.Name) > 200 {
			v.add(gp+".name", "job and group names together must be at most 200 characters")
		}
		validateGroup(v, gp, g)
	}
	return v.errs.Err()
}

func validateGroup(v *validator, gp string, g *Group) {
	if g.Count < 0 || g.Count > MaxCount {
		v.add(gp+".count", "must be between 0 and %d", MaxCount)
	}
	if len(g.Tasks) == 0 {
		v.add(gp+".tasks", "must have at least one task")
	}
	if rp := g.RestartPolicy; rp != nil {
		p := gp + ".restartPolicy"
		if rp.Attempts < 0 {
			v.add(p+".attempts", "must be >= 0")
		}
		if rp.Interval < 0 {
			v.add(p+".interval", "must be >= 0")
		}
		if rp.Delay < 0 {
			v.add(p+".delay", "must be >= 0")
		}
		if rp.Mode != RestartFail && rp.Mode != RestartDelay {
			v.add(p+".mode", "must be %q or %q, not %q", RestartFail, RestartDelay, rp.Mode)
		}
		if rp.Mode == RestartDelay && rp.Interval <= 0 {
			v.add(p+".interval", "must be > 0 when mode is %q", RestartDelay)
		}
	}
	for ci, c := range g.Constraints {
		cp := fmt.Sprintf("%s.constraints[%d]", gp, ci)
		if !strings.HasPrefix(c.Attribute, "attr.") && !strings.HasPrefix(c.Attribute, "label.") ||
			c.Attribute == "attr." || c.Attribute == "label." {
			v.add(cp+".attribute", "must be attr.<name> (os, arch, cpu, memory, name) or label.<key>, not %q", c.Attribute)
		}
		if c.Operator != OpEqual && c.Operator != OpNotEqual {
			v.add(cp+".operator", "must be %q or %q, not %q", OpEqual, OpNotEqual, c.Operator)
		}
	}
	tasks := map[string]bool{}
	ports := map[int]string{}
	for ti := range g.Tasks {
		t := &g.Tasks[ti]
		tp := fmt.Sprintf("%s.tasks[%d]", gp, ti)
		v.name(tp+".name", t.Name)
		if tasks[t.Name] && t.Name != "" {
			v.add(tp+".name", "duplicate task name %q", t.Name)
		}
		tasks[t.Name] = true
		if t.Driver == "" {
			v.add(tp+".driver", "is required")
		}
		if t.Driver == "docker" {
			validateDockerConfig(v, tp+".config", &t.Config)
		} else if t.Config.Command == "" {
			v.add(tp+".config.command", "is required")
		}
		for k := range t.Config.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				v.add(tp+".config.env", "invalid variable name %q", k)
			}
		}
		if t.Resources.CPU < 0 {
			v.add(tp+".resources.cpu", "must be >= 0 (millicores)")
		}
		if t.Resources.Memory < 0 {
			v.add(tp+".resources.memory", "must be >= 0 (bytes)")
		}
		portNames := map[string]bool{}
		for pi, p := range t.Resources.Ports {
			pp := fmt.Sprintf("%s.resources.ports[%d]", tp, pi)
			if p.Name == "" {
				v.add(pp+".name", "is required")
			} else if portNames[p.Name] {
				v.add(pp+".name", "duplicate port name %q", p.Name)
			}
			portNames[p.Name] = true
			if p.Port < 1 || p.Port > 65535 {
				v.add(pp+".port", "must be between 1 and 65535")
			} else if other, dup := ports[p.Port]; dup {
				v.add(pp+".port", "port %d is also requested by %s", p.Port, other)
			} else {
				ports[p.Port] = pp
			}
		}
		if t.KillTimeout < 0 {
			v.add(tp+".killTimeout", "must be >= 0")
		}
	}
}

// Validate checks a node as registered by an agent.
func (n *Node) Validate() error {
	v := &validator{}
	if p := CheckNodeName(n.Name); p != "" {
		v.add("metadata.name", "%s", p)
	}
	switch n.Spec.Availability {
	case "", Active, Pause, Drain:
	default:
		v.add("spec.availability", "must be %q, %q or %q, not %q", Active, Pause, Drain, n.Spec.Availability)
	}
	if n.Status.Allocatable.CPU < 0 {
		v.add("status.allocatable.cpu", "must be >= 0")
	}
	if n.Status.Allocatable.Memory < 0 {
		v.add("status.allocatable.memory", "must be >= 0")
	}
	return v.errs.Err()
}

// validateDockerConfig checks the fields the docker driver reads.
func validateDockerConfig(v *validator, cp string, c *TaskConfig) {
	if c.Image == "" {
		v.add(cp+".image", "is required for the docker driver")
	}
	switch c.PullPolicy {
	case "", "if-not-present", "always", "never":
	default:
		v.add(cp+".pullPolicy", `must be "if-not-present", "always" or "never", not %q`, c.PullPolicy)
	}
	switch c.NetworkMode {
	case "", "bridge", "host", "none":
	default:
		v.add(cp+".networkMode", `must be "bridge", "host" or "none", not %q`, c.NetworkMode)
	}
	for i, vol := range c.Volumes {
		if p := CheckVolume(vol); p != "" {
			v.add(fmt.Sprintf("%s.volumes[%d]", cp, i), "%s", p)
		}
	}
	for i, dev := range c.Devices {
		if p := CheckDevice(dev); p != "" {
			v.add(fmt.Sprintf("%s.devices[%d]", cp, i), "%s", p)
		}
	}
	names := map[string]bool{}
	for i, pm := range c.PortMap {
		pp := fmt.Sprintf("%s.portMap[%d]", cp, i)
		if pm.Name == "" {
			v.add(pp+".name", "is required")
		} else if names[pm.Name] {
			v.add(pp+".name", "duplicate port name %q", pm.Name)
		}
		names[pm.Name] = true
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			v.add(pp+".containerPort", "must be between 1 and 65535")
		}
		if pm.HostPort < 0 || pm.HostPort > 65535 {
			v.add(pp+".hostPort", "must be between 0 (any free port) and 65535")
		}
		if pm.Protocol != "" && pm.Protocol != "tcp" && pm.Protocol != "udp" {
			v.add(pp+".protocol", `must be "tcp" or "udp", not %q`, pm.Protocol)
		}
	}
}

// CheckVolume describes what is wrong with a bind mount
// "/host/path:/container/path[:ro|:rw]", or returns "".
func CheckVolume(vol string) string {
	parts := strings.Split(vol, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return fmt.Sprintf("must be host-path:container-path[:ro], not %q", vol)
	}
	if !strings.HasPrefix(parts[0], "/") || !strings.HasPrefix(parts[1], "/") {
		return fmt.Sprintf("paths must be absolute in %q", vol)
	}
	if len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
		return fmt.Sprintf("mode must be \"ro\" or \"rw\", not %q", parts[2])
	}
	return ""
}

// CheckDevice describes what is wrong with a device
// "/dev/host[:/dev/container[:permissions]]", permissions being letters of
// "rwm", or returns "".
func CheckDevice(dev string) string {
	parts := strings.Split(dev, ":")
	if len(parts) > 3 {
		return fmt.Sprintf("must be /dev/host[:/dev/container[:rwm]], not %q", dev)
	}
	for _, p := range parts[:min(len(parts), 2)] {
		if !strings.HasPrefix(p, "/") {
			return fmt.Sprintf("device paths must be absolute in %q", dev)
		}
	}
	if len(parts) == 3 {
		perm := parts[2]
		if perm == "" || strings.Trim(perm, "rwm") != "" {
			return fmt.Sprintf("permissions must be letters of \"rwm\", not %q", perm)
		}
	}
	return ""
}
