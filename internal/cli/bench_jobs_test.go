package cli

import (
	"errors"
	"strings"
	"testing"
)

func TestBenchJobsStartupBadDriverFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--driver", "docker"}, "--image is required"},
		{[]string{"--driver", "qemu", "--image", "x"}, "--driver must be exec or docker"},
		{[]string{"--image", "x"}, "need --driver docker"},
		{[]string{"--command", "sleep"}, "need --driver docker"},
		{[]string{"--args", "1"}, "need --driver docker"},
	} {
		args := append([]string{"jobs", "startup", "--server", "http://127.0.0.1:1"}, tc.args...)
		_, err := runBench(t, args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != ExitUsage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %s: error %v, want a usage error containing %q", strings.Join(args, " "), err, tc.want)
		}
	}
}

func TestStartupJobDocker(t *testing.T) {
	job, err := startupJob("docker", "herd-bench-sleep:latest", "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	task := job("j", 2).Spec.Groups[0].Tasks[0]
	if task.Driver != "docker" || task.Config.Image != "herd-bench-sleep:latest" || task.Config.PullPolicy != "never" {
		t.Fatalf("task %+v, want a docker task of herd-bench-sleep:latest, pull policy never", task)
	}
}
