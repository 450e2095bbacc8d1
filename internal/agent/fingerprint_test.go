package agent

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
	"github.com/herd-project/herd/internal/driver/docker"
)

// The docker driver publishes ports; the agent finds that out through the
// optional interface.
var _ driver.PortReporter = (*docker.Driver)(nil)

func round(states ...any) fingerprints {
	f := fingerprints{states: map[string]driverState{}, healthy: map[string]driver.Driver{}}
	for i := 0; i < len(states); i += 2 {
		name := states[i].(string)
		f.order = append(f.order, name)
		f.states[name] = states[i+1].(driverState)
	}
	return f
}

func TestDriverChanges(t *testing.T) {
	ok := driverState{healthy: true}
	noCgroups := driverState{healthy: true, message: "cgroups unavailable"}
	down := driverState{message: "docker daemon unreachable: refused"}
	downOther := driverState{message: "docker daemon unreachable: timeout"}
	for _, tt := range []struct {
		name     string
		old, cur fingerprints
		want     []string
	}{
		{"nothing changed", round("exec", ok, "docker", down), round("exec", ok, "docker", down), nil},
		{"became unhealthy", round("docker", ok), round("docker", down),
			[]string{"driver docker became unhealthy: docker daemon unreachable: refused"}},
		{"became unhealthy without a message", round("docker", ok), round("docker", driverState{}),
			[]string{"driver docker became unhealthy"}},
		{"became healthy", round("exec", ok, "docker", down), round("exec", ok, "docker", ok),
			[]string{"driver docker became healthy"}},
		{"became healthy with a limitation", round("exec", down), round("exec", noCgroups),
			[]string{"driver exec became healthy: cgroups unavailable"}},
		{"unhealthy for another reason", round("docker", down), round("docker", downOther),
			[]string{"driver docker is still unhealthy: docker daemon unreachable: timeout"}},
		{"new limitation", round("exec", ok), round("exec", noCgroups),
			[]string{"driver exec: cgroups unavailable"}},
		{"limitation gone", round("exec", noCgroups), round("exec", ok),
			[]string{"driver exec: healthy (no longer: cgroups unavailable)"}},
		{"several, in configuration order", round("exec", ok, "docker", ok), round("exec", down, "docker", down),
			[]string{"driver exec became unhealthy: docker daemon unreachable: refused", "driver docker became unhealthy: docker daemon unreachable: refused"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, driverChanges(tt.old, tt.cur)); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFingerprintMessage(t *testing.T) {
	f := round("exec", driverState{healthy: true, message: "cgroups unavailable"}, "raw", driverState{healthy: true}, "docker", driverState{})
	if got, want := f.message(), "exec: cgroups unavailable; docker: unhealthy"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

// TestRefingerprint follows a driver that goes away and comes back: the
// node is registered again each time, admission follows, and rounds that
// change nothing register nothing.
func TestRefingerprint(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.FingerprintInterval = 30 * time.Second })
	h.drv.setFingerprint(driver.Fingerprint{Healthy: true, Attributes: map[string]string{"version": "1"}})
	h.start()
	registers, _ := h.srv.counts()

	// Rounds without change: fingerprints taken, no registration.
	before := h.drv.fingerprintCount()
	h.advanceUntil("two more fingerprint rounds", time.Second, func() bool { return h.drv.fingerprintCount() >= before+2 })
	if got, _ := h.srv.counts(); got != registers {
		t.Fatalf("registered %d times after unchanged fingerprints, want %d", got, registers)
	}

	h.drv.setFingerprint(driver.Fingerprint{Healthy: false, Message: "daemon unreachable"})
	h.advanceUntil("the node no longer offers the driver", time.Second, func() bool {
		return len(h.srv.node(testNode).Status.Drivers) == 0
	})
	n := h.srv.node(testNode)
	if n.Status.Message != "fake: unhealthy: daemon unreachable" || n.Status.Attributes["driver.fake.version"] != "" {
		t.Errorf("message %q, attributes %v", n.Status.Message, n.Status.Attributes)
	}
	if n.Status.AgentID != h.agent.agentID || n.Status.Attributes[api.AttrName] != testNode {
		t.Errorf("re-registered node lost its identity: %+v", n.Status)
	}
	rejected := testAlloc(0, "u1", testNode)
	h.srv.put(rejected)
	h.eventually("a task for the unhealthy driver is rejected", h.clientStatusIs(rejected, api.ClientFailed))
	if !h.hasEvent(rejected, EventRejected, `driver "fake" is not available`) {
		t.Errorf("events %v", h.eventReasons(rejected))
	}

	h.drv.setFingerprint(driver.Fingerprint{Healthy: true, Attributes: map[string]string{"version": "2"}})
	h.advanceUntil("the node offers the driver again", time.Second, func() bool {
		return slices.Equal(h.srv.node(testNode).Status.Drivers, []string{testDriver})
	})
	n = h.srv.node(testNode)
	if n.Status.Message != "" || n.Status.Attributes["driver.fake.version"] != "2" {
		t.Errorf("message %q, attributes %v", n.Status.Message, n.Status.Attributes)
	}
	started := testAlloc(1, "u2", testNode)
	h.srv.put(started)
	h.eventually("a task for the healthy driver runs", h.clientStatusIs(started, api.ClientRunning))
	if got, _ := h.srv.counts(); got != registers+2 {
		t.Errorf("registered %d times, want %d (start + two changes)", got, registers+2)
	}
}

// TestRefingerprintRetriesRegistration registers again on the next round
// when the registration of a change failed.
func TestRefingerprintRetriesRegistration(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.FingerprintInterval = 30 * time.Second })
	h.start()
	h.srv.mu.Lock()
	failing := true
	h.srv.registerHook = func() error {
		if failing {
			return apiError(503, "unavailable")
		}
		return nil
	}
	h.srv.mu.Unlock()
	h.drv.setFingerprint(driver.Fingerprint{Healthy: false, Message: "gone"})
	before := h.drv.fingerprintCount()
	h.advanceUntil("a round saw the change", time.Second, func() bool { return h.drv.fingerprintCount() > before })
	h.srv.mu.Lock()
	failing = false
	h.srv.mu.Unlock()
	h.advanceUntil("the change is registered", time.Second, func() bool {
		return h.srv.node(testNode).Status.Message == "fake: unhealthy: gone"
	})
}

func TestNewRejectsNegativeFingerprintInterval(t *testing.T) {
	_, err := New(Config{Server: newFakeServer(), Name: testNode, DataDir: t.TempDir(), FingerprintInterval: -time.Second})
	if err == nil || !strings.Contains(err.Error(), "FingerprintInterval") {
		t.Errorf("err %v, want one naming FingerprintInterval", err)
	}
}

// TestReportsPorts reports the host ports of a driver that publishes them,
// after a start and after re-attaching, and none once the task exited.
func TestReportsPorts(t *testing.T) {
	h := newHarness(t)
	pd := &portDriver{fakeDriver: h.drv, ports: map[string]int{"http": 32768, "admin": 32769}}
	h.cfg.Drivers = []driver.Driver{pd}
	reattach := testAlloc(0, "u1", testNode, withClientStatus(api.ClientRunning))
	h.srv.put(reattach)
	h.drv.seed(taskID("u1", "main"), true, driver.ExitResult{})
	h.start()
	fresh := testAlloc(1, "u2", testNode)
	h.srv.put(fresh)

	want := map[string]int{"http": 32768, "admin": 32769}
	for _, a := range []*api.Allocation{reattach, fresh} {
		h.eventually(a.Name+" reports its ports", func() bool { return h.status(a).Tasks["main"].Ports != nil })
		if diff := cmp.Diff(want, h.status(a).Tasks["main"].Ports); diff != "" {
			t.Errorf("%s ports (-want +got):\n%s", a.Name, diff)
		}
	}
	if err := h.drv.exit(taskID("u2", "main"), exitFailure); err != nil {
		t.Fatal(err)
	}
	h.eventually("the exited task reports no ports", func() bool {
		st := h.status(fresh).Tasks["main"]
		return st.State != api.TaskRunning && st.Ports == nil
	})
}

// TestPortsFailureIsNotFatal keeps a task running whose ports cannot be
// read.
func TestPortsFailureIsNotFatal(t *testing.T) {
	h := newHarness(t)
	h.cfg.Drivers = []driver.Driver{&portDriver{fakeDriver: h.drv, portsErr: errors.New("inspect failed")}}
	h.start()
	a := testAlloc(0, "u1", testNode)
	h.srv.put(a)
	h.eventually("the task runs", h.clientStatusIs(a, api.ClientRunning))
	if st := h.status(a).Tasks["main"]; st.Ports != nil || st.State != api.TaskRunning {
		t.Errorf("task state %+v", st)
	}
}

func TestCopyStatusCopiesPorts(t *testing.T) {
	s := api.AllocStatus{Tasks: map[string]api.TaskState{"main": {Ports: map[string]int{"http": 1}}}}
	c := copyStatus(s)
	c.Tasks["main"].Ports["http"] = 2
	if s.Tasks["main"].Ports["http"] != 1 {
		t.Errorf("copy shares the ports map")
	}
}
