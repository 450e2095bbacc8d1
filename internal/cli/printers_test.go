package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herd-project/herd/api"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fixedNow is the clock of every golden file.
var fixedNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return fixedNow.Add(-d) }

func intPtr(i int) *int { return &i }

// checkGolden compares got with testdata/name.golden, or rewrites the file
// with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

func webGroup(count int) api.Group {
	return api.Group{
		Name:  "web",
		Count: count,
		Tasks: []api.Task{{
			Name:   "web",
			Driver: "exec",
			Config: api.TaskConfig{
				Command: "/bin/sh",
				Args:    []string{"-c", "while true; do\n  echo \"hi $HERD_ALLOC_NAME\"; sleep 3\ndone"},
				Env:     map[string]string{"GREETING": "hi", "MODE": "demo"},
			},
			Resources:   api.Resources{CPU: 100, Memory: 32 << 20},
			KillTimeout: api.DefaultKillTimeout,
		}},
	}
}

func fixtureJobs() []api.Job {
	rp := api.DefaultRestartPolicy(api.JobService)
	web := webGroup(3)
	web.RestartPolicy = &rp
	web.Constraints = []api.Constraint{{Attribute: "attr.os", Operator: api.OpEqual, Value: "linux"}}
	cache := api.Group{Name: "cache", Count: 2, Tasks: []api.Task{{
		Name: "redis", Driver: "exec",
		Config:    api.TaskConfig{Command: "/usr/bin/redis-server", Args: []string{"--port", "6379"}, WorkingDir: "data"},
		Resources: api.Resources{CPU: 1500, Memory: 1536 << 20, Ports: []api.Port{{Name: "redis", Port: 6379}}},
	}}}
	return []api.Job{
		{
			Meta: api.Meta{Name: "web", Namespace: "default", UID: "6f1c2a", CreatedAt: ago(3 * time.Minute),
				Labels: map[string]string{"app": "web", "tier": "front"}},
			Spec: api.JobSpec{Type: api.JobService, Priority: 50, Groups: []api.Group{web}},
			Status: api.JobStatus{Phase: api.JobRunning, Groups: map[string]api.GroupSummary{
				"web": {Desired: 3, Running: 2, Pending: 1},
			}},
		},
		{
			Meta: api.Meta{Name: "shop", Namespace: "prod", CreatedAt: ago(50 * time.Hour)},
			Spec: api.JobSpec{Type: api.JobService, Priority: 70, Groups: []api.Group{webGroup(1), cache}},
			Status: api.JobStatus{Phase: api.JobRunning, Groups: map[string]api.GroupSummary{
				"web": {Desired: 1, Running: 1}, "cache": {Desired: 2, Running: 2},
			}},
		},
		{
			Meta:   api.Meta{Name: "report", Namespace: "default", CreatedAt: ago(90 * time.Minute)},
			Spec:   api.JobSpec{Type: api.JobBatch, Priority: 50, Groups: []api.Group{webGroup(2)}},
			Status: api.JobStatus{Phase: api.JobFailed, Message: "allocation report.web[1] failed"},
		},
	}
}

func fixtureAllocs() []api.Allocation {
	mk := func(index int, node string, status api.ClientStatus) api.Allocation {
		return api.Allocation{
			Meta: api.Meta{Name: api.AllocName("web", "web", index), Namespace: "default",
				UID: "uid-" + string(rune('a'+index%26)), CreatedAt: ago(3 * time.Minute)},
			Spec: api.AllocSpec{Job: "web", Group: "web", Index: index, GroupSpec: webGroup(3),
				JobType: api.JobService, Node: node, DesiredStatus: api.DesiredRun},
			Status: api.AllocStatus{ClientStatus: status},
		}
	}
	running := mk(0, "n1", api.ClientRunning)
	running.Status.Tasks = map[string]api.TaskState{"web": {State: api.TaskRunning, Restarts: 1, PID: 4242,
		StartedAt: ago(2 * time.Minute)}}
	running.Status.UpdatedAt = ago(2 * time.Minute)

	replaced := mk(1, "n2", api.ClientFailed)
	replaced.Spec.Attempt = 2
	replaced.Spec.PreviousNode = "n1"
	replaced.Status.Tasks = map[string]api.TaskState{"web": {State: api.TaskDead, Failed: true, ExitCode: intPtr(1),
		Restarts: 2, StartedAt: ago(70 * time.Second), FinishedAt: ago(10 * time.Second),
		Message: "exited with code 1"}}

	unplaced := mk(2, "", "")
	unplaced.Status.PlacementFailure = "0/3 nodes eligible: 2 lacked memory, 1 draining"

	stopping := mk(10, "n1", api.ClientRunning)
	stopping.Spec.DesiredStatus = api.DesiredStop
	stopping.Spec.DesiredReason = "scaled down"
	stopping.CreatedAt = ago(5 * 24 * time.Hour)

	other := mk(0, "n1", api.ClientComplete)
	other.Name, other.Namespace, other.Spec.Job = "batch.web[0]", "jobs", "batch"
	return []api.Allocation{stopping, unplaced, other, running, replaced}
}

func fixtureNodes() []api.Node {
	return []api.Node{
		{
			Meta: api.Meta{Name: "n2", CreatedAt: ago(26 * time.Hour)},
			Spec: api.NodeSpec{Availability: api.Drain},
			Status: api.NodeInfo{Status: api.NodeDown, Address: "10.0.0.2:7081",
				Attributes:  map[string]string{"os": "linux", "arch": "arm64"},
				Capacity:    api.Resources{CPU: 2000, Memory: 2 << 30},
				Allocatable: api.Resources{CPU: 1500, Memory: 1536 << 20},
				Drivers:     []string{"exec"}, LastHeartbeat: ago(40 * time.Second),
				Message: "no heartbeat for 40s"},
		},
		{
			Meta: api.Meta{Name: "n1", CreatedAt: ago(3 * time.Hour), Labels: map[string]string{"zone": "a"}},
			Spec: api.NodeSpec{Availability: api.Active},
			Status: api.NodeInfo{Status: api.NodeReady, Address: "10.0.0.1:7081", AgentID: "agent-1",
				Attributes:  map[string]string{"os": "linux", "arch": "amd64", "cpu": "4000", "memory": "8589934592", "name": "n1"},
				Capacity:    api.Resources{CPU: 4000, Memory: 8 << 30},
				Allocatable: api.Resources{CPU: 3500, Memory: 7680 << 20},
				Drivers:     []string{"exec", "raw"}, LastHeartbeat: ago(time.Second)},
		},
	}
}

func fixtureEvents() []api.Event {
	return []api.Event{
		{Time: ago(3 * time.Minute), Type: api.EventNormal, Kind: api.KindJob, Namespace: "default", Name: "web",
			Reason: "Created", Message: "job created", Source: "apiserver"},
		{Time: ago(170 * time.Second), Type: api.EventNormal, Kind: api.KindAllocation, Namespace: "default",
			Name: "web.web[0]", Reason: "Placed", Message: "placed on n1", Source: "scheduler"},
		{Time: ago(60 * time.Second), Type: api.EventWarning, Kind: api.KindAllocation, Namespace: "default",
			Name: "web.web[2]", Reason: "PlacementFailed", Message: "0/3 nodes eligible: 2 lacked memory, 1 draining",
			Source: "scheduler"},
		{Time: ago(40 * time.Second), Type: api.EventWarning, Kind: api.KindNode, Name: "n2",
			Reason: "NodeDown", Message: "no heartbeat for 5s\n(grace period)", Source: "node-controller"},
		{Time: ago(10 * time.Minute), Type: api.EventNormal, Kind: api.KindJob, Namespace: "jobs", Name: "batch",
			Reason: "Created", Message: "job created", Source: "apiserver"},
	}
}

func TestTableGolden(t *testing.T) {
	opts := tableOptions{now: fixedNow}
	wide := tableOptions{now: fixedNow, wide: true}
	all := tableOptions{now: fixedNow, namespaces: true}
	allWide := tableOptions{now: fixedNow, wide: true, namespaces: true}
	tests := []struct {
		name  string
		table *table
	}{
		{"get-jobs", jobsTable(fixtureJobs(), opts)},
		{"get-jobs-all-wide", jobsTable(fixtureJobs(), allWide)},
		{"get-allocs", allocsTable(fixtureAllocs(), opts)},
		{"get-allocs-all-wide", allocsTable(fixtureAllocs(), allWide)},
		{"get-nodes", nodesTable(fixtureNodes(), opts)},
		{"get-nodes-wide", nodesTable(fixtureNodes(), wide)},
		{"get-events", eventsTable(fixtureEvents(), opts, true)},
		{"get-events-all", eventsTable(fixtureEvents(), all, true)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.table.write(&buf, ""); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.name, buf.String())
		})
	}
}

func TestReportGolden(t *testing.T) {
	jobs, allocs, nodes, events := fixtureJobs(), fixtureAllocs(), fixtureNodes(), fixtureEvents()
	var webAllocs, n1Allocs []api.Allocation
	for _, a := range allocs {
		if a.Namespace == "default" && a.Spec.Job == "web" {
			webAllocs = append(webAllocs, a)
		}
		if a.Spec.Node == "n1" {
			n1Allocs = append(n1Allocs, a)
		}
	}
	allocByName := func(name string) *api.Allocation {
		for i := range allocs {
			if allocs[i].Name == name {
				return &allocs[i]
			}
		}
		t.Fatalf("no fixture allocation %s", name)
		return nil
	}
	failed := allocByName("web.web[1]")
	failed.Status.Events = []api.Event{
		{Time: ago(30 * time.Second), Type: api.EventWarning, Reason: "Restarting", Message: "task web exited with code 1, restart 2 in 2s"},
		{Time: ago(10 * time.Second), Type: api.EventWarning, Reason: "Failed", Message: "task web used its 2 restarts"},
	}
	failedEvents := []api.Event{
		{Time: ago(10 * time.Second), Type: api.EventWarning, Kind: api.KindAllocation, Namespace: "default",
			Name: "web.web[1]", Reason: "Failed", Message: "task web used its 2 restarts"},
		{Time: ago(5 * time.Second), Type: api.EventNormal, Kind: api.KindAllocation, Namespace: "default",
			Name: "web.web[1]", Reason: "Replaced", Message: "attempt 3 after 5s backoff"},
	}
	tests := []struct {
		name  string
		write func(*bytes.Buffer) error
	}{
		{"describe-job", func(b *bytes.Buffer) error {
			return writeJobReport(b, fixedNow, jobReport{job: &jobs[0], allocs: webAllocs, events: eventsOfJob(events, "web")})
		}},
		{"describe-job-bare", func(b *bytes.Buffer) error {
			return writeJobReport(b, fixedNow, jobReport{job: &jobs[2]})
		}},
		{"describe-alloc-failed", func(b *bytes.Buffer) error {
			return writeAllocReport(b, fixedNow, allocReport{alloc: failed, events: failedEvents})
		}},
		{"describe-alloc-ports", func(b *bytes.Buffer) error {
			running := *allocByName("web.web[0]")
			web := running.Status.Tasks["web"]
			web.Ports = map[string]int{"http": 32768, "admin": 32769}
			running.Status.Tasks = map[string]api.TaskState{"web": web}
			return writeAllocReport(b, fixedNow, allocReport{alloc: &running})
		}},
		{"describe-alloc-unplaced", func(b *bytes.Buffer) error {
			return writeAllocReport(b, fixedNow, allocReport{alloc: allocByName("web.web[2]")})
		}},
		{"describe-node", func(b *bytes.Buffer) error {
			return writeNodeReport(b, fixedNow, nodeReport{node: &nodes[1], allocs: n1Allocs})
		}},
		{"describe-node-down", func(b *bytes.Buffer) error {
			return writeNodeReport(b, fixedNow, nodeReport{node: &nodes[0], events: events[3:4]})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.write(&buf); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.name, buf.String())
		})
	}
}

func TestPrintObject(t *testing.T) {
	list := &api.List[api.Job]{Items: fixtureJobs()[:1], ResourceVersion: "42"}
	var js, ys bytes.Buffer
	if err := printObject(&js, list, outputJSON); err != nil {
		t.Fatal(err)
	}
	if err := printObject(&ys, list, outputYAML); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"{\n  \"items\": [\n", `"resourceVersion": "42"`, `"killTimeout": "5s"`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON lacks %q:\n%s", want, js.String())
		}
	}
	for _, want := range []string{"items:\n- metadata:\n", "resourceVersion: \"42\"", "killTimeout: 5s"} {
		if !strings.Contains(ys.String(), want) {
			t.Errorf("YAML lacks %q:\n%s", want, ys.String())
		}
	}
}
