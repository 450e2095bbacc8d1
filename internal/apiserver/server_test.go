package apiserver

import (
	"net/http"
	"strings"
	"testing"

	"github.com/herd-project/herd/api"
	"github.com/prometheus/client_golang/prometheus"
)

func TestHealthzAndMetrics(t *testing.T) {
	e := newEnv(t)
	code, body := e.do("GET", "/healthz", "")
	if code != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	_, _ = e.cli.GetJob(e.ctx(), "default", "nope")
	text := e.metricsText()
	for _, want := range []string{
		`herd_apiserver_http_requests_total{code="200",route="GET /healthz"} 1`,
		`herd_apiserver_http_requests_total{code="404",route="GET /v1/namespaces/{ns}/jobs/{name}"} 1`,
		`herd_apiserver_http_request_duration_seconds_count{code="200",route="GET /healthz"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestOwnMetricsRegistry(t *testing.T) {
	reg, err := New(Config{Registry: newEnv(t).reg})
	if err != nil {
		t.Fatal(err)
	}
	if reg.Handler() == nil {
		t.Fatal("no handler")
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a registry")
	}
	// A registerer that cannot gather needs a gatherer.
	if _, err := New(Config{Registry: newEnv(t).reg, Metrics: prometheus.WrapRegistererWithPrefix("x_", prometheus.NewRegistry())}); err == nil {
		t.Fatal("New with a registerer and no gatherer")
	}
}

func TestPanicIsRecovered(t *testing.T) {
	e := newEnv(t)
	e.srv.handle("GET /boom", func(http.ResponseWriter, *http.Request) error { panic("boom") })
	code, body := e.do("GET", "/boom", "")
	ae := apiError(t, body)
	if code != http.StatusInternalServerError || ae.Reason != api.ReasonInternal {
		t.Fatalf("panic answered %d %s", code, body)
	}
	if code, _ := e.do("GET", "/healthz", ""); code != http.StatusOK {
		t.Fatal("server unhealthy after a panic")
	}
}
