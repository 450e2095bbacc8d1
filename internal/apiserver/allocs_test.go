package apiserver

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

func TestListAllocsSortedAndFiltered(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()
	for _, i := range []int{10, 2, 0, 1} {
		e.seedAlloc("default", "web", "web", i, fmt.Sprintf("n%d", i%2))
	}
	e.seedAlloc("default", "api", "api", 0, "n1")
	e.commit(registry.Create(&api.Namespace{Meta: api.Meta{Name: "team"}}))
	e.seedAlloc("team", "web", "web", 0, "n0")

	names := func(l *api.List[api.Allocation]) string {
		var out []string
		for _, a := range l.Items {
			out = append(out, a.Namespace+"/"+a.Name)
		}
		return strings.Join(out, " ")
	}
	tests := []struct {
		filter api.AllocFilter
		want   string
	}{
		{api.AllocFilter{}, "default/api.api[0] default/web.web[0] default/web.web[1] default/web.web[2] default/web.web[10] team/web.web[0]"},
		{api.AllocFilter{Namespace: "default", Job: "web"}, "default/web.web[0] default/web.web[1] default/web.web[2] default/web.web[10]"},
		{api.AllocFilter{Node: "n1"}, "default/api.api[0] default/web.web[1]"},
		{api.AllocFilter{Job: "web", Node: "n0"}, "default/web.web[0] default/web.web[2] default/web.web[10] team/web.web[0]"},
		{api.AllocFilter{Namespace: "team"}, "team/web.web[0]"},
		{api.AllocFilter{Namespace: "nope"}, ""},
	}
	for _, tt := range tests {
		l, err := e.cli.ListAllocs(ctx, tt.filter)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(l); got != tt.want {
			t.Errorf("ListAllocs(%+v) = %s, want %s", tt.filter, got, tt.want)
		}
		if l.ResourceVersion == "" || l.Items == nil {
			t.Errorf("list %+v", l)
		}
	}
	a, err := e.cli.GetAlloc(ctx, "default", "web.web[10]")
	if err != nil || a.Spec.Index != 10 || a.ResourceVersion == "" {
		t.Fatalf("GetAlloc: %+v %v", a, err)
	}
	_, err = e.cli.GetAlloc(ctx, "default", "web.web[11]")
	wantError(t, err, http.StatusNotFound, api.ReasonNotFound, "web.web[11]")
}

func TestReportAllocStatus(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()
	a := e.seedAlloc("default", "web", "web", 0, "n1")
	running := api.AllocStatus{
		ClientStatus: api.ClientRunning,
		Tasks:        map[string]api.TaskState{"main": {State: api.TaskRunning, PID: 42}},
		Events:       []api.Event{{Reason: "Started"}},
	}

	e.clock.Advance(time.Second)
	got, err := e.cli.ReportAllocStatus(ctx, "default", a.Name, api.AllocStatusReport{UID: a.UID, Node: "n1", Status: running})
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if got.Status.ClientStatus != api.ClientRunning || got.Status.Tasks["main"].PID != 42 ||
		!got.Status.UpdatedAt.Equal(t0.Add(time.Second)) || got.ResourceVersion == a.ResourceVersion {
		t.Fatalf("status after report %+v", got.Status)
	}
	if stored := e.reg.Snapshot().Allocs["default/"+a.Name]; stored.Status.ClientStatus != api.ClientRunning {
		t.Fatalf("stored %+v", stored.Status)
	}

	// The allocation is replaced in place: the old incarnation's reports
	// are refused.
	repl := *e.reg.Snapshot().Allocs["default/"+a.Name]
	repl.UID, repl.Spec.Node, repl.Status = "new-uid", "n2", api.AllocStatus{ClientStatus: api.ClientPending}
	e.commit(registry.Update(&repl))
	_, err = e.cli.ReportAllocStatus(ctx, "default", a.Name, api.AllocStatusReport{UID: a.UID, Node: "n1", Status: running})
	wantError(t, err, http.StatusConflict, api.ReasonConflict, "new-uid", "replaced incarnation")
	_, err = e.cli.ReportAllocStatus(ctx, "default", a.Name, api.AllocStatusReport{UID: "new-uid", Node: "n1", Status: running})
	wantError(t, err, http.StatusConflict, api.ReasonConflict, `placed on node "n2", not "n1"`)
	if st := e.reg.Snapshot().Allocs["default/"+a.Name].Status; st.ClientStatus != api.ClientPending {
		t.Fatalf("a refused report changed the status: %+v", st)
	}

	_, err = e.cli.ReportAllocStatus(ctx, "default", "web.web[9]", api.AllocStatusReport{UID: "u", Node: "n1"})
	wantError(t, err, http.StatusNotFound, api.ReasonNotFound)
	_, err = e.cli.ReportAllocStatus(ctx, "default", a.Name, api.AllocStatusReport{Status: api.AllocStatus{
		ClientStatus: "lost", Tasks: map[string]api.TaskState{"main": {State: "zombie"}},
	}})
	ae := wantError(t, err, http.StatusBadRequest, api.ReasonInvalid)
	var fields []string
	for _, d := range ae.Details {
		fields = append(fields, d.Field)
	}
	if diff := cmp.Diff([]string{"node", "status.clientStatus", "status.tasks.main.state", "uid"}, fields); diff != "" {
		t.Fatalf("fields (-want +got):\n%s", diff)
	}
}

func TestMergeStatus(t *testing.T) {
	now := t0.Add(time.Hour)
	exit1 := 1
	events := func(from, to int) []api.Event {
		var out []api.Event
		for i := from; i < to; i++ {
			out = append(out, api.Event{Reason: fmt.Sprint(i)})
		}
		return out
	}
	cur := api.AllocStatus{
		ClientStatus:     api.ClientRunning,
		Tasks:            map[string]api.TaskState{"a": {State: api.TaskRunning}, "b": {State: api.TaskRunning}},
		PlacementFailure: "kept",
		Events:           events(0, 8),
		UpdatedAt:        t0,
	}
	tests := []struct {
		name string
		rep  api.AllocStatus
		want api.AllocStatus
	}{
		{
			name: "empty report only stamps the time",
			want: api.AllocStatus{ClientStatus: api.ClientRunning, Tasks: cur.Tasks, PlacementFailure: "kept", Events: events(0, 8), UpdatedAt: now},
		},
		{
			name: "status, one task and events",
			rep: api.AllocStatus{
				ClientStatus:     api.ClientFailed,
				Tasks:            map[string]api.TaskState{"b": {State: api.TaskDead, Failed: true, ExitCode: &exit1}},
				Events:           events(8, 13),
				PlacementFailure: "ignored",
			},
			want: api.AllocStatus{
				ClientStatus:     api.ClientFailed,
				Tasks:            map[string]api.TaskState{"a": {State: api.TaskRunning}, "b": {State: api.TaskDead, Failed: true, ExitCode: &exit1}},
				PlacementFailure: "kept",
				Events:           events(3, 13),
				UpdatedAt:        now,
			},
		},
		{
			name: "events already stored count once",
			rep:  api.AllocStatus{Events: events(5, 10)},
			want: api.AllocStatus{ClientStatus: api.ClientRunning, Tasks: cur.Tasks, PlacementFailure: "kept", Events: events(0, 10), UpdatedAt: now},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeStatus(cur, tt.rep, now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("merge (-want +got):\n%s", diff)
			}
			if len(cur.Events) != 8 || len(cur.Tasks) != 2 || cur.Tasks["b"].State != api.TaskRunning {
				t.Fatal("merge changed the stored status")
			}
		})
	}
}
