package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/logstore"
)

func writeLog(t *testing.T, dataDir, uid, task, stream, content string) *logstore.Writer {
	t.Helper()
	w, err := logstore.NewWriter(taskLogDir(dataDir, uid, task), stream, logstore.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if _, err := w.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	return w
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestLogsEndpoint(t *testing.T) {
	h := newHarness(t)
	h.srv.put(testAlloc(0, "u1", testNode, withBatch(), withClientStatus(api.ClientComplete)))
	h.srv.put(testAlloc(1, "u2", testNode, withBatch(), withTasks("a", "b"), withClientStatus(api.ClientComplete)))
	w := writeLog(t, h.cfg.DataDir, "u1", "main", "stdout", "one\ntwo\nthree\n")
	writeLog(t, h.cfg.DataDir, "u2", "a", "stdout", "from a\n")
	writeLog(t, h.cfg.DataDir, "u2", "b", "stderr", "from b\n")
	h.start()
	base := "http://" + h.agent.Addr()

	for _, tt := range []struct {
		query      string
		wantStatus int
		wantBody   string
	}{
		{"alloc=u1&task=main", 200, "one\ntwo\nthree\n"},
		{"alloc=u1", 200, "one\ntwo\nthree\n"},
		{"alloc=u1&task=main&tail=1", 200, "three\n"},
		{"alloc=u1&task=main&stream=stderr", 200, ""},
		{"alloc=u2&task=b&stream=stderr", 200, "from b\n"},
		{"alloc=u2", 400, "task: required, the allocation has tasks a, b"},
		{"alloc=u3&task=main", 404, "allocation u3 has no logs on node n1"},
		{"alloc=u1&task=other", 404, `allocation u1 has no task "other" on node n1`},
		{"alloc=..&task=main", 400, `alloc: ".." cannot be used as a directory name`},
		{"task=main", 400, "alloc: the allocation uid is required"},
		{"alloc=u1&stream=stdin", 400, `stream: must be stdout or stderr, not "stdin"`},
		{"alloc=u1&tail=-2", 400, "tail: must be a non-negative number of lines"},
		{"alloc=u1&follow=maybe", 400, "follow: must be true or false"},
		{"alloc=u1&task=Bad_Name", 400, "task: must consist of"},
	} {
		status, body := get(t, base+"/v1/logs?"+tt.query)
		if status != tt.wantStatus {
			t.Errorf("%s: status %d, want %d (%s)", tt.query, status, tt.wantStatus, body)
			continue
		}
		if status == 200 {
			if body != tt.wantBody {
				t.Errorf("%s: body %q, want %q", tt.query, body, tt.wantBody)
			}
			continue
		}
		var apiErr api.Error
		if err := json.Unmarshal([]byte(body), &apiErr); err != nil || apiErr.Status != status || !strings.Contains(apiErr.Message, tt.wantBody) {
			t.Errorf("%s: error %q, want an api.Error containing %q", tt.query, body, tt.wantBody)
		}
	}

	if status, body := get(t, base+"/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", status, body)
	}
	if status, _ := get(t, base+"/v1/nope"); status != 404 {
		t.Errorf("unknown path: %d", status)
	}

	// Follow sends what is there, then new lines as they come.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/logs?alloc=u1&task=main&follow=true&tail=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || line != "three\n" {
		t.Fatalf("first followed line %q, %v", line, err)
	}
	if _, err := w.Write([]byte("four\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "four\n" {
		t.Fatalf("new followed line %q, %v", line, err)
	}
}

func TestFollowEndsAtShutdown(t *testing.T) {
	h := newHarness(t)
	h.srv.put(testAlloc(0, "u1", testNode, withBatch(), withClientStatus(api.ClientComplete)))
	writeLog(t, h.cfg.DataDir, "u1", "main", "stdout", "line\n")
	h.start()
	resp, err := http.Get("http://" + h.agent.Addr() + "/v1/logs?alloc=u1&follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || line != "line\n" {
		t.Fatalf("followed line %q, %v", line, err)
	}
	h.stop() // returns only if the follow ended
	if _, err := io.ReadAll(r); err != nil {
		t.Logf("stream ended with %v", err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(c *Config) { c.Registerer = reg }).start()
	a := testAlloc(0, "u1", testNode, withPolicy(1, 0, api.RestartFail))
	h.srv.put(a)
	h.eventually("running", h.clientStatusIs(a, api.ClientRunning))
	if got := metricValue(t, reg, "herd_agent_tasks_running"); got != 1 {
		t.Errorf("running tasks %v", got)
	}
	if err := h.drv.exit(taskID("u1", "main"), exitFailure); err != nil {
		t.Fatal(err)
	}
	h.eventually("restarted", func() bool { return h.status(a).Tasks["main"].Restarts == 1 && h.drv.running(taskID("u1", "main")) })
	if s, r := metricValue(t, reg, "herd_agent_task_starts_total"), metricValue(t, reg, "herd_agent_task_restarts_total"); s != 2 || r != 1 {
		t.Errorf("starts %v, restarts %v", s, r)
	}
	if _, err := New(Config{Server: h.srv, Name: "n2", DataDir: t.TempDir(), Registerer: reg}); err == nil {
		t.Errorf("a second agent on the same registry was accepted")
	}
}

// metricValue reads a gauge or counter without labels from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name || len(f.GetMetric()) != 1 {
			continue
		}
		m := f.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
