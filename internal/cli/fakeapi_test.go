package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/herd-project/herd/api"
)

// fakeAPI is a test double of herd's HTTP API: the endpoints the CLI uses,
// over objects held in memory, with the API's status codes and error
// bodies.
type fakeAPI struct {
	mu       sync.Mutex
	rev      int
	jobs     map[string]*api.Job        // by namespace/name
	allocs   map[string]*api.Allocation // by namespace/name
	nodes    map[string]*api.Node
	events   []api.Event
	logs     map[string]string // output by "alloc/task/stream"
	requests []string          // "METHOD path?query" as sent, in order
	// beforeJobPut runs (under mu) before a job PUT is decided, to simulate
	// a concurrent writer.
	beforeJobPut func()
	// followLogs, when set, serves followed logs: it writes and then blocks
	// until the client goes away.
	followLogs func(w http.ResponseWriter, r *http.Request)
}

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{
		jobs:   map[string]*api.Job{},
		allocs: map[string]*api.Allocation{},
		nodes:  map[string]*api.Node{},
		logs:   map[string]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/jobs", f.listJobs)
	mux.HandleFunc("GET /v1/namespaces/{ns}/jobs", f.listJobs)
	mux.HandleFunc("POST /v1/namespaces/{ns}/jobs", f.createJob)
	mux.HandleFunc("GET /v1/namespaces/{ns}/jobs/{name}", f.getJob)
	mux.HandleFunc("PUT /v1/namespaces/{ns}/jobs/{name}", f.putJob)
	mux.HandleFunc("DELETE /v1/namespaces/{ns}/jobs/{name}", f.deleteJob)
	mux.HandleFunc("POST /v1/namespaces/{ns}/jobs/{name}/scale", f.scaleJob)
	mux.HandleFunc("GET /v1/allocs", f.listAllocs)
	mux.HandleFunc("GET /v1/namespaces/{ns}/allocs", f.listAllocs)
	mux.HandleFunc("GET /v1/namespaces/{ns}/allocs/{name}", f.getAlloc)
	mux.HandleFunc("GET /v1/namespaces/{ns}/allocs/{name}/logs", f.getLogs)
	mux.HandleFunc("GET /v1/nodes", f.listNodes)
	mux.HandleFunc("GET /v1/nodes/{name}", f.getNode)
	mux.HandleFunc("PUT /v1/nodes/{name}/availability", f.setAvailability)
	mux.HandleFunc("GET /v1/events", f.listEvents)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.RequestURI)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

// requestLog returns the requests served so far.
func (f *fakeAPI) requestLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

func (f *fakeAPI) addJob(j api.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	j.ResourceVersion = strconv.Itoa(f.rev)
	f.jobs[j.Namespace+"/"+j.Name] = &j
}

func (f *fakeAPI) job(ns, name string) *api.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.jobs[ns+"/"+name]
}

func (f *fakeAPI) addAlloc(a api.Allocation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.allocs[a.Namespace+"/"+a.Name] = &a
}

func (f *fakeAPI) addNode(n api.Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[n.Name] = &n
}

func writeJSON200(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeAPIError(w http.ResponseWriter, status int, reason, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.Error{Status: status, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

func (f *fakeAPI) listJobs(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	list := api.List[api.Job]{Items: []api.Job{}, ResourceVersion: strconv.Itoa(f.rev)}
	for _, j := range f.jobs {
		if ns := r.PathValue("ns"); ns == "" || j.Namespace == ns {
			list.Items = append(list.Items, *j)
		}
	}
	writeJSON200(w, list)
}

func (f *fakeAPI) getJob(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[r.PathValue("ns")+"/"+r.PathValue("name")]
	if !ok {
		writeAPIError(w, http.StatusNotFound, api.ReasonNotFound, "job %s not found", r.PathValue("name"))
		return
	}
	writeJSON200(w, j)
}

// decodeJob reads a job body as the API server does: defaults, then
// validation with field paths.
func decodeJob(w http.ResponseWriter, r *http.Request) (*api.Job, bool) {
	var j api.Job
	if err := json.NewDecoder(r.Body).Decode(&j); err != nil {
		writeAPIError(w, http.StatusBadRequest, api.ReasonBadRequest, "bad job: %v", err)
		return nil, false
	}
	j.Defaults()
	if err := j.Validate(); err != nil {
		var fes api.FieldErrors
		errors.As(err, &fes)
		w.WriteHeader(http.StatusUnprocessableEntity)
		_ = json.NewEncoder(w).Encode(api.Error{Status: http.StatusUnprocessableEntity, Reason: api.ReasonInvalid,
			Message: "job " + j.Name + " is invalid", Details: fes})
		return nil, false
	}
	return &j, true
}

func (f *fakeAPI) createJob(w http.ResponseWriter, r *http.Request) {
	j, ok := decodeJob(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := j.Namespace + "/" + j.Name
	if _, exists := f.jobs[key]; exists {
		writeAPIError(w, http.StatusConflict, api.ReasonAlreadyExists, "job %s already exists", j.Name)
		return
	}
	f.rev++
	j.ResourceVersion = strconv.Itoa(f.rev)
	f.jobs[key] = j
	writeJSON200(w, j)
}

func (f *fakeAPI) putJob(w http.ResponseWriter, r *http.Request) {
	j, ok := decodeJob(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.beforeJobPut != nil {
		f.beforeJobPut()
	}
	key := j.Namespace + "/" + j.Name
	old, exists := f.jobs[key]
	if j.ResourceVersion != "" && (!exists || old.ResourceVersion != j.ResourceVersion) {
		writeAPIError(w, http.StatusConflict, api.ReasonConflict, "job %s changed since version %s", j.Name, j.ResourceVersion)
		return
	}
	f.rev++
	j.ResourceVersion = strconv.Itoa(f.rev)
	f.jobs[key] = j
	writeJSON200(w, j)
}

func (f *fakeAPI) deleteJob(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := r.PathValue("ns") + "/" + r.PathValue("name")
	if _, ok := f.jobs[key]; !ok {
		writeAPIError(w, http.StatusNotFound, api.ReasonNotFound, "job %s not found", r.PathValue("name"))
		return
	}
	delete(f.jobs, key)
	w.WriteHeader(http.StatusOK)
}

func (f *fakeAPI) scaleJob(w http.ResponseWriter, r *http.Request) {
	var req api.ScaleRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeAPIError(w, http.StatusBadRequest, api.ReasonBadRequest, "bad scale request: %v", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[r.PathValue("ns")+"/"+r.PathValue("name")]
	if !ok {
		writeAPIError(w, http.StatusNotFound, api.ReasonNotFound, "job %s not found", r.PathValue("name"))
		return
	}
	for i := range j.Spec.Groups {
		if j.Spec.Groups[i].Name == req.Group {
			j.Spec.Groups[i].Count = req.Count
			f.rev++
			j.ResourceVersion = strconv.Itoa(f.rev)
			writeJSON200(w, j)
			return
		}
	}
	writeAPIError(w, http.StatusUnprocessableEntity, api.ReasonInvalid, "job %s has no group %q", j.Name, req.Group)
}

func (f *fakeAPI) listAllocs(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	list := api.List[api.Allocation]{Items: []api.Allocation{}, ResourceVersion: strconv.Itoa(f.rev)}
	for _, a := range f.allocs {
		if ns := r.PathValue("ns"); ns != "" && a.Namespace != ns {
			continue
		}
		if job := q.Get("job"); job != "" && a.Spec.Job != job {
			continue
		}
		if node := q.Get("node"); node != "" && a.Spec.Node != node {
			continue
		}
		list.Items = append(list.Items, *a)
	}
	writeJSON200(w, list)
}

func (f *fakeAPI) getAlloc(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.allocs[r.PathValue("ns")+"/"+r.PathValue("name")]
	if !ok {
		writeAPIError(w, http.StatusNotFound, api.ReasonNotFound, "allocation %s not found", r.PathValue("name"))
		return
	}
	writeJSON200(w, a)
}

func (f *fakeAPI) getLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("follow") == "true" && f.followLogs != nil {
		f.followLogs(w, r)
		return
	}
	stream := q.Get("stream")
	if stream == "" {
		stream = "stdout"
	}
	f.mu.Lock()
	out, ok := f.logs[r.PathValue("name")+"/"+q.Get("task")+"/"+stream]
	f.mu.Unlock()
	if !ok {
		writeAPIError(w, http.StatusNotFound, api.ReasonNotFound, "no logs of task %q of allocation %s", q.Get("task"), r.PathValue("name"))
		return
	}
	if n, err := strconv.Atoi(q.Get("tail")); err == nil && n > 0 {
		lines := strings.SplitAfter(out, "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		out = strings.Join(lines, "")
	}
	_, _ = io.WriteString(w, out)
}

func (f *fakeAPI) listNodes(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	list := api.List[api.Node]{Items: []api.Node{}, ResourceVersion: strconv.Itoa(f.rev)}
	for _, n := range f.nodes {
		list.Items = append(list.Items, *n)
	}
	writeJSON200(w, list)
}

func (f *fakeAPI) getNode(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[r.PathValue("name")]
	if !ok {
		writeAPIError(w, http.StatusNotFound, api.ReasonNotFound, "node %s not found", r.PathValue("name"))
		return
	}
	writeJSON200(w, n)
}

func (f *fakeAPI) setAvailability(w http.ResponseWriter, r *http.Request) {
	var req api.AvailabilityRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeAPIError(w, http.StatusBadRequest, api.ReasonBadRequest, "bad availability request: %v", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[r.PathValue("name")]
	if !ok {
		writeAPIError(w, http.StatusNotFound, api.ReasonNotFound, "node %s not found", r.PathValue("name"))
		return
	}
	n.Spec.Availability = req.Availability
	writeJSON200(w, n)
}

func (f *fakeAPI) listEvents(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	list := api.List[api.Event]{Items: []api.Event{}, ResourceVersion: strconv.Itoa(f.rev)}
	for _, e := range f.events {
		if ns := q.Get("namespace"); ns != "" && e.Namespace != ns {
			continue
		}
		if kind := q.Get("kind"); kind != "" && e.Kind != kind {
			continue
		}
		if name := q.Get("name"); name != "" && e.Name != name {
			continue
		}
		list.Items = append(list.Items, e)
	}
	writeJSON200(w, list)
}
