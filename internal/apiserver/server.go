// Package apiserver is herd's HTTP/JSON API: the CLI submits jobs through
// it, agents register their nodes, send heartbeats, watch their allocations
// and report their status through it. It reads from the registry's cache and
// writes through registry commits, so every write is conditional on the
// version it was decided on. The routes are listed in docs/control-plane.md;
// api.Client is their Go client.
package apiserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/herd-project/herd/internal/registry"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of Config.
const (
	DefaultBookmarkInterval = 10 * time.Second
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes = 4 << 20
	// DefaultStoreTimeout bounds one request's work against the store, so
	// that an unreachable store turns into 503 rather than a hung request.
	DefaultStoreTimeout = 10 * time.Second
	// casAttempts bounds the re-read-and-retry loop of writes that conflict
	// with a concurrent writer.
	casAttempts = 8
	// eventSource names the API server in the events it records.
	eventSource = "apiserver"
)

// Config configures a Server.
type Config struct {
	Registry *registry.Registry
	Logger   *slog.Logger
	// Clock stamps heartbeats, status reports, events and creation times,
	// and paces bookmarks.
	Clock clockwork.Clock
	// Metrics is where the server registers its metrics and Gatherer what
	// /metrics serves. When Metrics is nil the server makes its own
	// registry (with Go and process metrics) for both; when Gatherer is nil
	// and Metrics is a *prometheus.Registry, it is used for both.
	Metrics  prometheus.Registerer
	Gatherer prometheus.Gatherer
	// BookmarkInterval is how often a watch stream gets a BOOKMARK;
	// default 10s.
	BookmarkInterval time.Duration
	// HTTPClient fetches logs from agents; by default a client with a 5s
	// connect timeout and no overall timeout (logs may be followed).
	HTTPClient *http.Client
	// StoreTimeout bounds the store work of one request (writes and the
	// waits for the cache); default 10s.
	StoreTimeout time.Duration
}

// Server serves the API.
type Server struct {
	reg      *registry.Registry
	log      *slog.Logger
	clock    clockwork.Clock
	bookmark time.Duration
	timeout  time.Duration
	agents   *http.Client
	mux      *http.ServeMux
	metrics  *metrics
}

// New returns a server of cfg.Registry.
func New(cfg Config) (*Server, error) {
	if cfg.Registry == nil {
		return nil, errors.New("apiserver: no registry")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.BookmarkInterval <= 0 {
		cfg.BookmarkInterval = DefaultBookmarkInterval
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = defaultAgentClient()
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = DefaultStoreTimeout
	}
	if cfg.Metrics == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		cfg.Metrics, cfg.Gatherer = reg, reg
	}
	if cfg.Gatherer == nil {
		g, ok := cfg.Metrics.(prometheus.Gatherer)
		if !ok {
			return nil, errors.New("apiserver: Config.Gatherer is required when Metrics is not a *prometheus.Registry")
		}
		cfg.Gatherer = g
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Server{
		reg:      cfg.Registry,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		bookmark: cfg.BookmarkInterval,
		timeout:  cfg.StoreTimeout,
		agents:   cfg.HTTPClient,
		mux:      http.NewServeMux(),
		metrics:  m,
	}
	s.routes(cfg.Gatherer)
	return s, nil
}

// Handler returns the HTTP handler of the API.
func (s *Server) Handler() http.Handler { return s.mux }

func defaultAgentClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: tr}
}

func (s *Server) routes(g prometheus.Gatherer) {
	s.handle("GET /healthz", func(w http.ResponseWriter, _ *http.Request) error {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
		return nil
	})
	metricsHandler := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	s.handle("GET /metrics", func(w http.ResponseWriter, r *http.Request) error {
		metricsHandler.ServeHTTP(w, r)
		return nil
	})

	s.handle("GET /v1/namespaces", s.listNamespaces)
	s.handle("PUT /v1/namespaces/{ns}", s.putNamespace)

	s.handle("GET /v1/jobs", s.listJobs)
	s.handle("GET /v1/namespaces/{ns}/jobs", s.listJobs)
	s.handle("POST /v1/namespaces/{ns}/jobs", s.createJob)
	s.handle("GET /v1/namespaces/{ns}/jobs/{name}", s.getJob)
	s.handle("PUT /v1/namespaces/{ns}/jobs/{name}", s.putJob)
	s.handle("DELETE /v1/namespaces/{ns}/jobs/{name}", s.deleteJob)
	s.handle("POST /v1/namespaces/{ns}/jobs/{name}/scale", s.scaleJob)

	s.handle("GET /v1/allocs", s.listAllocs)
	s.handle("GET /v1/namespaces/{ns}/allocs", s.listAllocs)
	s.handle("GET /v1/namespaces/{ns}/allocs/{name}", s.getAlloc)
	s.handle("PUT /v1/namespaces/{ns}/allocs/{name}/status", s.reportAllocStatus)
	s.handle("GET /v1/namespaces/{ns}/allocs/{name}/logs", s.allocLogs)

	s.handle("GET /v1/nodes", s.listNodes)
	s.handle("GET /v1/nodes/{name}", s.getNode)
	s.handle("PUT /v1/nodes/{name}", s.registerNode)
	s.handle("POST /v1/nodes/{name}/heartbeat", s.heartbeat)
	s.handle("PUT /v1/nodes/{name}/availability", s.setAvailability)

	s.handle("GET /v1/events", s.listEvents)
	s.handle("GET /v1/watch/{kind}", s.watch)

	s.handle("/", s.noRoute)
}

// handlerFunc is a route's handler; an error it returns becomes the
// answer (an api.Error) unless the handler already started one.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle registers h under pattern with metrics, panic recovery and error
// answers.
func (s *Server) handle(pattern string, h handlerFunc) {
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("apiserver: handler panicked", "route", pattern, "panic", p, "stack", string(debug.Stack()))
				if !rec.wrote {
					s.writeError(rec, r, &internalError{msg: fmt.Sprint(p)})
				} else {
					rec.status = http.StatusInternalServerError
				}
			}
			s.metrics.observe(pattern, rec.code(), time.Since(start))
		}()
		if err := h(rec, r); err != nil {
			if rec.wrote {
				s.log.Warn("apiserver: error after the answer started", "route", pattern, "err", err)
				return
			}
			s.writeError(rec, r, err)
		}
	}))
}

// noRoute answers paths no route matches: 405 when another method would
// match, 404 otherwise.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) error {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		for _, m := range allowed {
			w.Header().Add("Allow", m)
		}
		return apiErr(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s is not allowed on %s (allowed: %v)", r.Method, r.URL.Path, allowed)
	}
	return apiErr(http.StatusNotFound, "NotFound", "no such path: %s %s", r.Method, r.URL.Path)
}

// recorder remembers the status of an answer for metrics and for not
// writing an error after the answer started.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote && code >= 200 {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

// Flush sends what was written so far; streams call it after each line.
func (r *recorder) Flush() {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) code() string {
	if !r.wrote {
		return "200"
	}
	return strconv.Itoa(r.status)
}

// metrics of the HTTP API.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herd_apiserver_http_requests_total",
		Help: "HTTP requests by route pattern and status code.",
	}, []string{"route", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "herd_apiserver_http_request_duration_seconds",
		Help:    "Duration of HTTP requests (watch and log streams included) by route pattern and status code.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "code"})
	m := &metrics{}
	var err error
	if m.requests, err = register(reg, requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, duration); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or reuses the collector a previous server
// registered under the same name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("apiserver: registering metrics: %w", err)
	}
	return c, nil
}

func (m *metrics) observe(route, code string, d time.Duration) {
	m.requests.WithLabelValues(route, code).Inc()
	m.duration.WithLabelValues(route, code).Observe(d.Seconds())
}
