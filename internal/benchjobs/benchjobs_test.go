package benchjobs

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/herd-project/herd/api"
)

func TestSleepJobs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		job        JobFunc
		wantDriver string
		wantConfig api.TaskConfig
	}{
		{
			name:       "exec",
			job:        SleepJob,
			wantDriver: "exec",
			wantConfig: api.TaskConfig{Command: "/bin/sh", Args: []string{"-c", "exec sleep 100000"}},
		},
		{
			name:       "docker with the image's command",
			job:        DockerSleepJob("herd-bench-sleep:latest", "", nil),
			wantDriver: "docker",
			wantConfig: api.TaskConfig{Image: "herd-bench-sleep:latest", PullPolicy: "never"},
		},
		{
			name:       "docker with a command",
			job:        DockerSleepJob("busybox:1.36", "sleep", []string{"100000"}),
			wantDriver: "docker",
			wantConfig: api.TaskConfig{Image: "busybox:1.36", PullPolicy: "never", Command: "sleep", Args: []string{"100000"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := tc.job("bench-1", 7)
			if err := j.Validate(); err != nil {
				t.Fatalf("job does not validate: %v", err)
			}
			if j.Name != "bench-1" || j.Spec.Type != api.JobService {
				t.Fatalf("job %s of type %s, want service bench-1", j.Name, j.Spec.Type)
			}
			g := j.Spec.Groups[0]
			if g.Count != 7 || len(g.Tasks) != 1 {
				t.Fatalf("group of %d replicas and %d tasks, want 7 and 1", g.Count, len(g.Tasks))
			}
			if g.Tasks[0].Driver != tc.wantDriver {
				t.Fatalf("driver %q, want %q", g.Tasks[0].Driver, tc.wantDriver)
			}
			if d := cmp.Diff(tc.wantConfig, g.Tasks[0].Config); d != "" {
				t.Fatalf("config (-want +got)\n%s", d)
			}
		})
	}
}

func TestDockerSleepJobOwnsItsArgs(t *testing.T) {
	args := []string{"100000"}
	job := DockerSleepJob("img", "sleep", args)
	args[0] = "changed"
	if got := job("j", 1).Spec.Groups[0].Tasks[0].Config.Args[0]; got != "100000" {
		t.Fatalf("args changed with the caller's slice: %q", got)
	}
}
