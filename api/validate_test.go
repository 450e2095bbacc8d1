package api

import (
	"strings"
	"testing"
	"time"
)

func validJob() *Job {
	j := &Job{
		Meta: Meta{Name: "web"},
		Spec: JobSpec{Groups: []Group{{
			Name:  "web",
			Count: 3,
			Tasks: []Task{{Name: "server", Config: TaskConfig{Command: "/bin/sh"}, Resources: Resources{CPU: 100, Memory: 32 << 20}}},
		}}},
	}
	j.Defaults()
	return j
}

func TestDefaults(t *testing.T) {
	j := validJob()
	if j.Namespace != DefaultNamespace || j.Spec.Type != JobService || j.Spec.Priority != 50 {
		t.Fatalf("defaults not applied: %+v", j.Meta)
	}
	g := j.Spec.Groups[0]
	if g.RestartPolicy == nil || *g.RestartPolicy != DefaultRestartPolicy(JobService) {
		t.Fatalf("restart policy = %+v", g.RestartPolicy)
	}
	if g.Tasks[0].Driver != "exec" || g.Tasks[0].KillTimeout != DefaultKillTimeout {
		t.Fatalf("task defaults: %+v", g.Tasks[0])
	}
	if err := j.Validate(); err != nil {
		t.Fatalf("valid job rejected: %v", err)
	}
}

func TestValidateReportsEveryProblemWithItsPath(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Job)
		want   []string
	}{
		{"bad name", func(j *Job) { j.Name = "Web_1" }, []string{"metadata.name: must consist of"}},
		{"no groups", func(j *Job) { j.Spec.Groups = nil }, []string{"spec.groups: must have at least one group"}},
		{"bad type", func(j *Job) { j.Spec.Type = "cron" }, []string{`spec.type: must be "service" or "batch", not "cron"`}},
		{"priority", func(j *Job) { j.Spec.Priority = 101 }, []string{"spec.priority: must be between 1 and 100"}},
		{"negative memory and cpu", func(j *Job) {
			j.Spec.Groups[0].Tasks[0].Resources.Memory = -1
			j.Spec.Groups[0].Tasks[0].Resources.CPU = -5
		}, []string{
			"spec.groups[0].tasks[0].resources.cpu: must be >= 0",
			"spec.groups[0].tasks[0].resources.memory: must be >= 0",
		}},
		{"second task without command", func(j *Job) {
			j.Spec.Groups[0].Tasks = append(j.Spec.Groups[0].Tasks, Task{Name: "side", Driver: "exec"})
		}, []string{"spec.groups[0].tasks[1].config.command: is required"}},
		{"duplicate task", func(j *Job) {
			j.Spec.Groups[0].Tasks = append(j.Spec.Groups[0].Tasks, j.Spec.Groups[0].Tasks[0])
		}, []string{`spec.groups[0].tasks[1].name: duplicate task name "server"`}},
		{"count", func(j *Job) { j.Spec.Groups[0].Count = -1 }, []string{"spec.groups[0].count: must be between 0 and 10000"}},
		{"ports", func(j *Job) {
			j.Spec.Groups[0].Tasks[0].Resources.Ports = []Port{{Name: "http", Port: 8080}, {Name: "http", Port: 8080}, {Name: "x", Port: 70000}}
		}, []string{
			`spec.groups[0].tasks[0].resources.ports[1].name: duplicate port name "http"`,
			"spec.groups[0].tasks[0].resources.ports[1].port: port 8080 is also requested by spec.groups[0].tasks[0].resources.ports[0]",
			"spec.groups[0].tasks[0].resources.ports[2].port: must be between 1 and 65535",
		}},
		{"constraint", func(j *Job) {
			j.Spec.Groups[0].Constraints = []Constraint{{Attribute: "os", Operator: "=~", Value: "x"}}
		}, []string{
			"spec.groups[0].constraints[0].attribute: must be attr.<name>",
			`spec.groups[0].constraints[0].operator: must be "==" or "!=", not "=~"`,
		}},
		{"docker task without image", func(j *Job) {
			j.Spec.Groups[0].Tasks[0].Driver = "docker"
			j.Spec.Groups[0].Tasks[0].Config.Command = ""
		}, []string{"spec.groups[0].tasks[0].config.image: is required for the docker driver"}},
		{"docker config", func(j *Job) {
			j.Spec.Groups[0].Tasks[0].Driver = "docker"
			j.Spec.Groups[0].Tasks[0].Config = TaskConfig{
				Image:       "nginx",
				PullPolicy:  "sometimes",
				NetworkMode: "overlay",
				Volumes:     []string{"/data:/data:ro", "data:/data", "/a:/b:rx", "/only"},
				Devices:     []string{"/dev/fuse", "/dev/sda:/dev/xvda:rwm", "sda", "/dev/a:/dev/b:x"},
				PortMap: []PortMapping{
					{Name: "http", ContainerPort: 80},
					{Name: "http", ContainerPort: 0, HostPort: -1, Protocol: "sctp"},
				},
			}
		}, []string{
			`spec.groups[0].tasks[0].config.pullPolicy: must be "if-not-present", "always" or "never", not "sometimes"`,
			`spec.groups[0].tasks[0].config.networkMode: must be "bridge", "host" or "none", not "overlay"`,
			`spec.groups[0].tasks[0].config.volumes[1]: paths must be absolute`,
			`spec.groups[0].tasks[0].config.volumes[2]: mode must be "ro" or "rw", not "rx"`,
			`spec.groups[0].tasks[0].config.volumes[3]: must be host-path:container-path[:ro]`,
			`spec.groups[0].tasks[0].config.devices[2]: device paths must be absolute`,
			`spec.groups[0].tasks[0].config.devices[3]: permissions must be letters of "rwm", not "x"`,
			`spec.groups[0].tasks[0].config.portMap[1].name: duplicate port name "http"`,
			"spec.groups[0].tasks[0].config.portMap[1].containerPort: must be between 1 and 65535",
			"spec.groups[0].tasks[0].config.portMap[1].hostPort: must be between 0 (any free port) and 65535",
			`spec.groups[0].tasks[0].config.portMap[1].protocol: must be "tcp" or "udp", not "sctp"`,
		}},
		{"restart policy", func(j *Job) {
			j.Spec.Groups[0].RestartPolicy = &RestartPolicy{Attempts: -1, Mode: "never"}
		}, []string{
			"spec.groups[0].restartPolicy.attempts: must be >= 0",
			`spec.groups[0].restartPolicy.mode: must be "fail" or "delay", not "never"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := validJob()
			tt.mutate(j)
			err := j.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			fes, ok := err.(FieldErrors)
			if !ok {
				t.Fatalf("error is %T, want FieldErrors", err)
			}
			if len(fes) != len(tt.want) {
				t.Fatalf("got %d problems, want %d: %v", len(fes), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(fes[i].String(), w) {
					t.Errorf("problem %d = %q, want prefix %q", i, fes[i], w)
				}
			}
		})
	}
}

func TestDecodeJob(t *testing.T) {
	yamlJob := `
metadata:
  name: web
spec:
  type: service
  groups:
  - name: web
    count: 2
    restartPolicy: {attempts: 1, interval: 1m, delay: 2s, mode: delay}
    tasks:
    - name: server
      config:
        command: /bin/sh
        args: ["-c", "sleep 100"]
      killTimeout: 10s
`
	j, err := DecodeJob([]byte(yamlJob))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Validate(); err != nil {
		t.Fatal(err)
	}
	g := j.Spec.Groups[0]
	if g.RestartPolicy.Interval.Std() != time.Minute || g.RestartPolicy.Delay.Std() != 2*time.Second || g.Tasks[0].KillTimeout.Std() != 10*time.Second {
		t.Fatalf("durations: %+v %v", g.RestartPolicy, g.Tasks[0].KillTimeout)
	}

	jsonJob := `{"metadata":{"name":"b"},"spec":{"type":"batch","groups":[{"name":"g","count":1,"tasks":[{"name":"t","config":{"command":"true"}}]}]}}`
	if j, err := DecodeJob([]byte(jsonJob)); err != nil || j.Spec.Type != JobBatch {
		t.Fatalf("json job: %v %v", j, err)
	}

	for name, bad := range map[string]string{
		"unknown field": "metadata: {name: x}\nspec: {groups: [], replicas: 3}\n",
		"bad duration":  "metadata: {name: x}\nspec: {groups: [{name: g, count: 1, restartPolicy: {interval: soon}}]}\n",
		"not yaml":      "metadata: [\n",
		"empty":         "",
	} {
		if _, err := DecodeJob([]byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestAllocNames(t *testing.T) {
	name := AllocName("web.v2", "api", 12)
	if name != "web.v2.api[12]" {
		t.Fatalf("AllocName = %q", name)
	}
	job, group, index, err := ParseAllocName(name)
	if err != nil || job != "web.v2" || group != "api" || index != 12 {
		t.Fatalf("ParseAllocName = %q %q %d %v", job, group, index, err)
	}
	for _, bad := range []string{"web", "web[1]", "web.g[x]", "web.g[-1]", ".g[1]", "web.[1]"} {
		if _, _, _, err := ParseAllocName(bad); err == nil {
			t.Errorf("ParseAllocName(%q): no error", bad)
		}
	}
}
