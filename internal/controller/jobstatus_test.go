package controller

import (
	"testing"

	"github.com/herd-project/herd/api"
)

func TestDescribeFailure(t *testing.T) {
	code := func(c int) *int { return &c }
	for _, tc := range []struct {
		tasks map[string]api.TaskState
		want  string
	}{
		{nil, "allocation a failed"},
		{map[string]api.TaskState{"main": {ExitCode: code(0)}, "side": {ExitCode: code(7)}}, "allocation a failed: task side exited with code 7"},
		{map[string]api.TaskState{"main": {Signal: "SIGKILL"}}, "allocation a failed: task main was killed by SIGKILL"},
		{map[string]api.TaskState{"main": {Failed: true, Message: "command not found"}}, "allocation a failed: task main: command not found"},
		{map[string]api.TaskState{"main": {Failed: true}}, "allocation a failed: task main failed"},
	} {
		a := &api.Allocation{Meta: api.Meta{Name: "a"}, Status: api.AllocStatus{Tasks: tc.tasks}}
		if got := describeFailure(a); got != tc.want {
			t.Errorf("describeFailure(%v) = %q, want %q", tc.tasks, got, tc.want)
		}
	}
}
