package cli

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
)

// TestExamples decodes and validates every job file in examples/, checks
// what the README promises of each, and checks that their shell scripts
// parse.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d example job files, want at least 3", len(files))
	}
	jobs := map[string]*api.Job{}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			job, err := loadJob(data, file, "")
			if err != nil {
				t.Fatal(err)
			}
			jobs[filepath.Base(file)] = job
			for _, g := range job.Spec.Groups {
				for _, task := range g.Tasks {
					if task.Config.Command == "/bin/sh" && len(task.Config.Args) == 2 && task.Config.Args[0] == "-c" {
						checkShellSyntax(t, task.Config.Args[1])
					}
				}
			}
		})
	}

	web := jobs["web.yaml"]
	if web == nil || web.Spec.Type != api.JobService || web.Spec.Groups[0].Count != 3 ||
		web.Spec.Groups[0].GroupResources().CPU != 100 || web.Spec.Groups[0].GroupResources().Memory != 32<<20 {
		t.Errorf("web.yaml should be a service of 3 with cpu 100 and memory 32Mi: %+v", web)
	}
	batch := jobs["batch.yaml"]
	if batch == nil || batch.Spec.Type != api.JobBatch || batch.Spec.Groups[0].Count != 2 {
		t.Errorf("batch.yaml should be a batch job of 2: %+v", batch)
	}
	fails := jobs["batch-fails.yaml"]
	want := api.RestartPolicy{Attempts: 2, Interval: api.Duration(10 * time.Minute), Delay: api.Duration(time.Second), Mode: api.RestartFail}
	if fails == nil || fails.Spec.Type != api.JobBatch || *fails.Spec.Groups[0].RestartPolicy != want {
		t.Errorf("batch-fails.yaml should be a batch job with restart policy %+v: %+v", want, fails)
	}
}

// checkShellSyntax parses a script with sh -n, without running it.
func checkShellSyntax(t *testing.T, script string) {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-n", "-c", script).CombinedOutput()
	if err != nil {
		t.Errorf("script does not parse: %v\n%s\n%s", err, out, script)
	}
}

// TestFailingExampleFails runs the task of batch-fails.yaml as the exec
// driver would, to check that it fails as its README says.
func TestFailingExampleFails(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "batch-fails.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	job, err := api.DecodeJob(data)
	if err != nil {
		t.Fatal(err)
	}
	task := job.Spec.Groups[0].Tasks[0]
	cmd := exec.Command(task.Config.Command, task.Config.Args...)
	cmd.Env = append(os.Environ(), "HERD_ALLOC_NAME=batch-fails.work[0]")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("task ended with %v, want exit code 1", err)
	}
	if !strings.Contains(stderr.String(), "batch-fails.work[0]: something went wrong") {
		t.Errorf("stderr = %q", stderr.String())
	}
}
