package docker

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

// Labels the driver puts on its containers.
const (
	labelAllocUID  = "herd.alloc.uid"
	labelAllocName = "herd.alloc.name"
	labelNamespace = "herd.namespace"
	labelTask      = "herd.task"
	labelPause     = "herd.pause"
	labelLogDir    = "herd.log.dir"
	// labelPortPrefix + name = "<container port>/<protocol>".
	labelPortPrefix = "herd.port."
)

func containerName(id driver.TaskID) string { return "herd-" + id.AllocUID + "-" + id.Task }
func pauseName(allocUID string) string      { return "herd-pause-" + allocUID }

// taskSpec is what a task container is created from.
type taskSpec struct {
	config *container.Config
	host   *container.HostConfig
}

// buildTaskSpec turns a start request into container settings. networkMode
// is the docker network mode to use ("container:<id>", "bridge", "host" or
// "none"); port bindings are only made for "bridge" (otherwise the network
// namespace's owner has them).
func buildTaskSpec(req driver.StartRequest, logDir, networkMode string) (taskSpec, error) {
	tc := req.Task.Config
	labels := map[string]string{}
	maps.Copy(labels, tc.Labels)
	maps.Copy(labels, map[string]string{
		labelAllocUID:  req.ID.AllocUID,
		labelAllocName: req.AllocName,
		labelNamespace: req.Namespace,
		labelTask:      req.ID.Task,
		labelLogDir:    logDir,
	})
	exposed, bindings, err := portBindings(tc.PortMap)
	if err != nil {
		return taskSpec{}, err
	}
	for _, pm := range tc.PortMap {
		labels[labelPortPrefix+pm.Name] = string(portKey(pm))
	}
	env := map[string]string{}
	maps.Copy(env, tc.Env)
	maps.Copy(env, req.Env)
	cfg := &container.Config{
		Image:        tc.Image,
		Env:          envList(env),
		WorkingDir:   tc.WorkingDir,
		User:         tc.User,
		Labels:       labels,
		ExposedPorts: exposed,
	}
	if tc.Command != "" {
		cfg.Cmd = append([]string{tc.Command}, tc.Args...)
	} else if len(tc.Args) > 0 {
		cfg.Cmd = slices.Clone(tc.Args)
	}
	host := &container.HostConfig{
		NetworkMode: container.NetworkMode(networkMode),
		Privileged:  tc.Privileged,
		Binds:       slices.Clone(tc.Volumes),
	}
	if networkMode == "bridge" {
		host.PortBindings = bindings
	} else {
		// Only the network namespace's owner may expose ports.
		cfg.ExposedPorts = nil
	}
	for i, dev := range tc.Devices {
		dm, err := parseDevice(dev)
		if err != nil {
			return taskSpec{}, fmt.Errorf("task.config.devices[%d]: %w", i, err)
		}
		host.Devices = append(host.Devices, dm)
	}
	for i, vol := range tc.Volumes {
		if p := api.CheckVolume(vol); p != "" {
			return taskSpec{}, fmt.Errorf("task.config.volumes[%d]: %s", i, p)
		}
	}
	if r := req.Task.Resources; r.CPU > 0 || r.Memory > 0 {
		host.NanoCPUs = r.CPU * 1_000_000
		host.Memory = r.Memory
		// No swap beyond the limit, so that the limit means an OOM kill.
		host.MemorySwap = r.Memory
	}
	return taskSpec{config: cfg, host: host}, nil
}

func envList(env map[string]string) []string {
	list := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		list = append(list, k+"="+env[k])
	}
	return list
}

func portKey(pm api.PortMapping) nat.Port {
	proto := pm.Protocol
	if proto == "" {
		proto = "tcp"
	}
	return nat.Port(strconv.Itoa(pm.ContainerPort) + "/" + proto)
}

// portBindings publishes ports on all host addresses; host port 0 lets the
// daemon choose.
func portBindings(pms []api.PortMapping) (nat.PortSet, nat.PortMap, error) {
	if len(pms) == 0 {
		return nil, nil, nil
	}
	exposed, bindings := nat.PortSet{}, nat.PortMap{}
	for i, pm := range pms {
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 || pm.HostPort < 0 || pm.HostPort > 65535 {
			return nil, nil, fmt.Errorf("task.config.portMap[%d]: port out of range", i)
		}
		if pm.Protocol != "" && pm.Protocol != "tcp" && pm.Protocol != "udp" {
			return nil, nil, fmt.Errorf("task.config.portMap[%d].protocol: must be tcp or udp, not %q", i, pm.Protocol)
		}
		key := portKey(pm)
		exposed[key] = struct{}{}
		hostPort := ""
		if pm.HostPort > 0 {
			hostPort = strconv.Itoa(pm.HostPort)
		}
		bindings[key] = append(bindings[key], nat.PortBinding{HostPort: hostPort})
	}
	return exposed, bindings, nil
}

// parseDevice reads "/dev/x[:/dev/y[:rwm]]".
func parseDevice(dev string) (container.DeviceMapping, error) {
	if p := api.CheckDevice(dev); p != "" {
		return container.DeviceMapping{}, fmt.Errorf("%s", p)
	}
	parts := strings.Split(dev, ":")
	dm := container.DeviceMapping{PathOnHost: parts[0], PathInContainer: parts[0], CgroupPermissions: "rwm"}
	if len(parts) > 1 {
		dm.PathInContainer = parts[1]
	}
	if len(parts) > 2 {
		dm.CgroupPermissions = parts[2]
	}
	return dm, nil
}

// publishedPorts maps the task's port names (from its herd.port.* labels)
// to the host ports bound in the network namespace owner's settings.
func publishedPorts(labels map[string]string, ports nat.PortMap) map[string]int {
	out := map[string]int{}
	for k, v := range labels {
		name, ok := strings.CutPrefix(k, labelPortPrefix)
		if !ok {
			continue
		}
		for _, b := range ports[nat.Port(v)] {
			if p, err := strconv.Atoi(b.HostPort); err == nil && p > 0 {
				out[name] = p
				break
			}
		}
	}
	return out
}

// checkTaskID rejects IDs that cannot name a container and a state file.
func checkTaskID(id driver.TaskID) error {
	for _, f := range []struct{ field, v string }{{"allocUID", id.AllocUID}, {"task", id.Task}} {
		if f.v == "" {
			return fmt.Errorf("docker: %s is required", f.field)
		}
		if len(f.v) > 100 {
			return fmt.Errorf("docker: %s must be at most 100 characters", f.field)
		}
		for _, r := range f.v {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return fmt.Errorf("docker: %s %q may only hold letters, digits, '-', '_' and '.'", f.field, f.v)
			}
		}
		if f.v[0] == '.' || f.v[0] == '-' {
			return fmt.Errorf("docker: %s %q must start with a letter or digit", f.field, f.v)
		}
	}
	return nil
}
