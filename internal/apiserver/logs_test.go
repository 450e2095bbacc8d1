package apiserver

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herd-project/herd/api"
)

// fakeAgent serves /v1/logs as an agent does: the request's query is
// recorded, and with follow=true the second line waits for more.
type fakeAgent struct {
	*httptest.Server
	queries chan string
	more    chan struct{}
}

func newFakeAgent(t *testing.T) *fakeAgent {
	a := &fakeAgent{queries: make(chan string, 10), more: make(chan struct{})}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/logs" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		a.queries <- r.URL.RawQuery
		if q.Get("task") == "missing" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"status":404,"reason":"NotFound","message":"no logs for task missing"}`)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "line 1 of %s\n", q.Get("stream"))
		w.(http.Flusher).Flush()
		if q.Get("follow") == "true" {
			select {
			case <-a.more:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintln(w, "line 2")
	}))
	t.Cleanup(a.Close)
	return a
}

func TestLogsProxy(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()
	agent := newFakeAgent(t)
	n := agentNode("n1", "agent-1")
	n.Status.Address = strings.TrimPrefix(agent.URL, "http://")
	if _, err := e.cli.RegisterNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	a := e.seedAlloc("default", "web", "web", 0, "n1")

	rc, err := e.cli.Logs(ctx, "default", a.Name, api.LogOptions{Stream: "stderr", Tail: 5})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "line 1 of stderr\nline 2\n" {
		t.Fatalf("logs %q %v", b, err)
	}
	if q := <-agent.queries; q != "alloc="+a.UID+"&stream=stderr&tail=5&task=main" {
		t.Fatalf("agent asked with %q", q)
	}

	// A followed log arrives line by line.
	rc, err = e.cli.Logs(ctx, "default", a.Name, api.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	if line, err := br.ReadString('\n'); err != nil || line != "line 1 of \n" {
		t.Fatalf("first followed line %q %v", line, err)
	}
	if q := <-agent.queries; !strings.Contains(q, "follow=true") {
		t.Fatalf("agent asked with %q", q)
	}
	close(agent.more)
	if line, err := br.ReadString('\n'); err != nil || line != "line 2\n" {
		t.Fatalf("second followed line %q %v", line, err)
	}
}

func TestLogsErrors(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx()
	agent := newFakeAgent(t)
	up := agentNode("n1", "agent-1")
	up.Status.Address = strings.TrimPrefix(agent.URL, "http://")
	if _, err := e.cli.RegisterNode(ctx, up); err != nil {
		t.Fatal(err)
	}
	// An address nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := l.Addr().String()
	l.Close()
	down := agentNode("n2", "agent-2")
	down.Status.Address = deadAddr
	if _, err := e.cli.RegisterNode(ctx, down); err != nil {
		t.Fatal(err)
	}
	unplaced := e.seedAlloc("default", "web", "web", 0, "")
	two := e.seedAlloc("default", "web", "web", 1, "n1", "app", "sidecar")
	lost := e.seedAlloc("default", "web", "web", 2, "n2")
	ghost := e.seedAlloc("default", "web", "web", 3, "n9")
	placed := e.seedAlloc("default", "web", "web", 4, "n1")

	tests := []struct {
		name   string
		alloc  string
		opts   api.LogOptions
		status int
		words  []string
	}{
		{"missing alloc", "web.web[7]", api.LogOptions{}, 404, []string{"web.web[7]"}},
		{"not placed", unplaced.Name, api.LogOptions{}, 409, []string{"not placed"}},
		{"several tasks", two.Name, api.LogOptions{}, 400, []string{"app, sidecar", "task="}},
		{"unknown task", two.Name, api.LogOptions{Task: "db"}, 400, []string{`no task "db"`, "app, sidecar"}},
		{"bad stream", placed.Name, api.LogOptions{Stream: "stdin"}, 400, []string{"stdout or stderr"}},
		{"agent down", lost.Name, api.LogOptions{}, 502, []string{`agent of node "n2"`, deadAddr, "unreachable"}},
		{"node unknown", ghost.Name, api.LogOptions{}, 409, []string{`node "n9"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.cli.Logs(ctx, "default", tt.alloc, tt.opts)
			if !api.HasStatus(err, tt.status) {
				t.Fatalf("error %v, want status %d", err, tt.status)
			}
			for _, w := range tt.words {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	code, body := e.do("GET", "/v1/namespaces/default/allocs/"+placed.Name+"/logs?tail=-1", "")
	if code != 400 || !strings.Contains(apiError(t, body).Message, "tail") {
		t.Fatalf("negative tail: %d %s", code, body)
	}
	// The agent's own error answers are relayed.
	missing := e.seedAlloc("default", "other", "g", 0, "n1", "missing")
	_, err = e.cli.Logs(ctx, "default", missing.Name, api.LogOptions{})
	wantError(t, err, http.StatusNotFound, api.ReasonNotFound, `agent of node "n1"`, "no logs for task missing")
}
