package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

// fingerprintTimeout bounds one driver's fingerprint.
const fingerprintTimeout = 10 * time.Second

// machine is what the agent found out about its host.
type machine struct {
	capacity   api.Resources
	attributes map[string]string
	// drivers are the healthy drivers, advertised and used.
	drivers map[string]driver.Driver
	// fingerprints is the latest fingerprint round of the drivers.
	fingerprints fingerprints
	// message gathers what the drivers say of their limits.
	message string
	// notes are lines for the startup log.
	notes []string
}

// probeMachine detects capacity and attributes and fingerprints drivers.
func probeMachine(ctx context.Context, name string, drivers []driver.Driver) machine {
	m := machine{
		capacity: api.Resources{CPU: int64(runtime.NumCPU()) * 1000},
		attributes: map[string]string{
			api.AttrOS:   runtime.GOOS,
			api.AttrArch: runtime.GOARCH,
			api.AttrName: name,
		},
	}
	m.attributes[api.AttrCPU] = strconv.FormatInt(m.capacity.CPU, 10)
	m.attributes["cpu.cores"] = strconv.Itoa(runtime.NumCPU())
	if data, err := os.ReadFile("/proc/meminfo"); err != nil {
		m.notes = append(m.notes, fmt.Sprintf("memory capacity unknown (reading /proc/meminfo: %v); allocations that request memory will be rejected", err))
	} else if mem, err := parseMemTotal(data); err != nil {
		m.notes = append(m.notes, fmt.Sprintf("memory capacity unknown (%v); allocations that request memory will be rejected", err))
	} else {
		m.capacity.Memory = mem
		m.attributes[api.AttrMemory] = strconv.FormatInt(mem, 10)
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.attributes["kernel.version"] = strings.TrimSpace(string(data))
	}

	m.fingerprints = fingerprintDrivers(ctx, drivers)
	m.applyFingerprints(m.fingerprints)
	for _, name := range m.fingerprints.order {
		st := m.fingerprints.states[name]
		switch {
		case !st.healthy:
			m.notes = append(m.notes, fmt.Sprintf("driver %s is %s; tasks using it will be rejected", name, st.describe()))
		case st.message != "":
			m.notes = append(m.notes, fmt.Sprintf("driver %s: %s", name, st.message))
		default:
			m.notes = append(m.notes, fmt.Sprintf("driver %s: healthy", name))
		}
	}
	if len(drivers) == 0 {
		m.notes = append(m.notes, "no task drivers configured; every allocation will be rejected")
	}
	return m
}

// applyFingerprints makes f the drivers' part of the machine: the healthy
// drivers, the status message and the driver.* attributes. The attributes
// map is replaced, not changed, as registered nodes may still share it.
func (m *machine) applyFingerprints(f fingerprints) {
	m.fingerprints = f
	attrs := make(map[string]string, len(m.attributes)+len(f.attributes))
	for k, v := range m.attributes {
		if !strings.HasPrefix(k, "driver.") {
			attrs[k] = v
		}
	}
	maps.Copy(attrs, f.attributes)
	m.attributes = attrs
	m.drivers = f.healthy
	m.message = f.message()
}

// driverNames lists the healthy drivers, sorted.
func (m machine) driverNames() []string {
	names := make([]string, 0, len(m.drivers))
	for n := range m.drivers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// parseMemTotal reads MemTotal (in bytes) from the contents of /proc/meminfo.
func parseMemTotal(meminfo []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "MemTotal:" {
			continue
		}
		n, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("meminfo: bad MemTotal %q", fields[1])
		}
		unit := int64(1)
		if len(fields) >= 3 {
			switch strings.ToLower(fields[2]) {
			case "kb":
				unit = 1024
			case "mb":
				unit = 1024 * 1024
			default:
				return 0, fmt.Errorf("meminfo: unknown MemTotal unit %q", fields[2])
			}
		}
		return n * unit, nil
	}
	return 0, errors.New("meminfo: no MemTotal line")
}

// allocatable is capacity minus reserved, never negative.
func allocatable(capacity, reserved api.Resources) api.Resources {
	return api.Resources{
		CPU:    max(capacity.CPU-reserved.CPU, 0),
		Memory: max(capacity.Memory-reserved.Memory, 0),
	}
}

// advertiseAddress is the address others reach the agent's HTTP server at:
// the listener's, with an unspecified host (":7081") replaced by an address
// of this machine.
func advertiseAddress(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort(machineIP(), strconv.Itoa(tcp.Port))
}

// machineIP picks a non-loopback unicast address of this machine, IPv4
// first; 127.0.0.1 when there is none.
func machineIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "127.0.0.1"
	}
	var v6 string
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok || ipnet.IP.IsLoopback() || !ipnet.IP.IsGlobalUnicast() {
			continue
		}
		if ip4 := ipnet.IP.To4(); ip4 != nil {
			return ip4.String()
		}
		if v6 == "" {
			v6 = ipnet.IP.String()
		}
	}
	if v6 != "" {
		return v6
	}
	return "127.0.0.1"
}

// nodeObject is the node as the agent registers it.
func (a *Agent) nodeObject() *api.Node {
	a.nodeMu.Lock()
	defer a.nodeMu.Unlock()
	return &api.Node{
		Meta: api.Meta{Name: a.cfg.Name, Labels: a.cfg.Labels},
		Status: api.NodeInfo{
			Status:      api.NodeReady,
			Address:     a.advertise,
			Attributes:  a.machine.attributes,
			Capacity:    a.machine.capacity,
			Allocatable: a.allocatable,
			Drivers:     a.machine.driverNames(),
			AgentID:     a.agentID,
			Message:     a.machine.message,
		},
	}
}

// registerOnce sends the node to the API server.
func (a *Agent) registerOnce(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err := a.srv.RegisterNode(rctx, a.nodeObject())
	return err
}

// register registers the node, retrying with backoff until the API server
// answers or ctx ends.
func (a *Agent) register(ctx context.Context) error {
	bo := backoff{min: 250 * time.Millisecond, max: 5 * time.Second}
	for attempt := 1; ; attempt++ {
		err := a.registerOnce(ctx)
		if err == nil {
			a.log.Info("node registered", "address", a.advertise, "agentID", a.agentID)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := bo.next()
		a.log.Warn("waiting for the API server to register the node",
			"attempt", attempt, "retryIn", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.clock.After(wait):
		}
	}
}

// heartbeatLoop sends heartbeats every interval. A 404 (node unknown) and
// the first success after failures (the server may have restarted) register
// the node again.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	t := a.clock.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := a.srv.Heartbeat(rctx, a.cfg.Name, api.Heartbeat{AgentID: a.agentID})
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && !failing:
			continue
		case err == nil || api.IsNotFound(err):
			if err == nil {
				a.log.Info("API server reachable again; registering the node again")
			} else {
				a.log.Warn("API server does not know this node; registering it again")
			}
			if rerr := a.registerOnce(ctx); rerr != nil {
				a.log.Warn("registering the node failed; will retry", "err", rerr)
				failing = true
				continue
			}
			a.log.Info("node registered", "address", a.advertise, "agentID", a.agentID)
			failing = false
		default:
			if !failing {
				a.log.Warn("heartbeat failed; will keep trying", "err", err)
			}
			failing = true
		}
	}
}
