package apiserver

import (
	"net/http"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
)

func agentNode(name, agentID string) *api.Node {
	return &api.Node{
		Meta: api.Meta{Name: name, Labels: map[string]string{"zone": "a"}},
		Status: api.NodeInfo{
			Address: "127.0.0.1:7081", AgentID: agentID, Drivers: []string{"exec"},
			Allocatable: api.Resources{CPU: 4000, Memory: 8 << 30},
			Status:      api.NodeDown, // the server decides: a registering node is ready
		},
	}
}

func TestNodeRegistrationAndHeartbeats(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()

	n, err := e.cli.RegisterNode(ctx, agentNode("n1.example", "agent-1"))
	if err != nil {
		t.Fatalf("RegisterNode: %v", err)
	}
	if n.Spec.Availability != api.Active || n.Status.Status != api.NodeReady || !n.Status.LastHeartbeat.Equal(t0) || n.UID == "" {
		t.Fatalf("registered node %+v", n)
	}

	drained, err := e.cli.SetAvailability(ctx, "n1.example", api.Drain)
	if err != nil || drained.Spec.Availability != api.Drain {
		t.Fatalf("SetAvailability: %+v %v", drained, err)
	}
	// The agent restarts and registers again: the operator's drain stays.
	e.clock.Advance(time.Minute)
	again := agentNode("n1.example", "agent-2")
	again.Spec.Availability = api.Active
	n2, err := e.cli.RegisterNode(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if n2.Spec.Availability != api.Drain || n2.UID != n.UID || n2.Status.AgentID != "agent-2" {
		t.Fatalf("re-registered node %+v", n2)
	}

	// Heartbeats show as lastHeartbeat.
	e.clock.Advance(time.Second)
	if err := e.cli.Heartbeat(ctx, "n1.example", api.Heartbeat{AgentID: "agent-2"}); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	want := t0.Add(time.Minute + time.Second)
	got, err := e.cli.GetNode(ctx, "n1.example")
	if err != nil || !got.Status.LastHeartbeat.Equal(want) {
		t.Fatalf("GetNode: lastHeartbeat %v, want %v (%v)", got.Status.LastHeartbeat, want, err)
	}
	hb := e.reg.Snapshot().Heartbeats["n1.example"]
	if hb.AgentID != "agent-2" || !hb.Time.Equal(want) {
		t.Fatalf("stored heartbeat %+v", hb)
	}
	err = e.cli.Heartbeat(ctx, "n9", api.Heartbeat{AgentID: "x"})
	wantError(t, err, http.StatusNotFound, api.ReasonNotFound, "not registered")

	if _, err := e.cli.RegisterNode(ctx, agentNode("n0", "agent-0")); err != nil {
		t.Fatal(err)
	}
	list, err := e.cli.ListNodes(ctx)
	if err != nil || len(list.Items) != 2 || list.Items[0].Name != "n0" || list.Items[1].Name != "n1.example" ||
		!list.Items[1].Status.LastHeartbeat.Equal(want) {
		t.Fatalf("ListNodes: %+v %v", list, err)
	}

	_, err = e.cli.SetAvailability(ctx, "n1.example", "off")
	ae := wantError(t, err, http.StatusBadRequest, api.ReasonInvalid, `not "off"`)
	if len(ae.Details) != 1 || ae.Details[0].Field != "availability" {
		t.Fatalf("details %+v", ae.Details)
	}
	_, err = e.cli.SetAvailability(ctx, "n9", api.Pause)
	wantError(t, err, http.StatusNotFound, api.ReasonNotFound, `node "n9"`)
	_, err = e.cli.GetNode(ctx, "n9")
	wantError(t, err, http.StatusNotFound, api.ReasonNotFound)

	bad := agentNode("Bad_Node", "x")
	bad.Status.Allocatable.CPU = -1
	_, err = e.cli.RegisterNode(ctx, bad)
	ae = wantError(t, err, http.StatusBadRequest, api.ReasonInvalid)
	if len(ae.Details) != 2 || ae.Details[0].Field != "metadata.name" || ae.Details[1].Field != "status.allocatable.cpu" {
		t.Fatalf("details %+v", ae.Details)
	}

	evs, err := e.cli.ListEvents(ctx, api.EventFilter{Kind: api.KindNode, Name: "n1.example"})
	if err != nil || len(evs.Items) != 3 {
		t.Fatalf("node events %+v %v", evs, err)
	}
	for i, reason := range []string{"Registered", "Availability", "Registered"} {
		if evs.Items[i].Reason != reason {
			t.Fatalf("event %d: %+v, want reason %s", i, evs.Items[i], reason)
		}
	}
}
