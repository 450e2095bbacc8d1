package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultAddress is where the CLI and agents look for the API server when
// neither --server nor HERD_ADDR says otherwise.
const DefaultAddress = "http://127.0.0.1:7080"

// ErrUnreachable wraps failures to reach the API server at all.
var ErrUnreachable = errors.New("api: server unreachable")

// Client talks to herd's API server. It is safe for concurrent use.
type Client struct {
	base *url.URL
	http *http.Client
}

// NewClient returns a client of the API server at addr ("http://host:port"
// or "host:port").
func NewClient(addr string) (*Client, error) {
	if addr == "" {
		addr = DefaultAddress
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("server address %q: scheme must be http or https", addr)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("server address %q: no host", addr)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.MaxIdleConnsPerHost = 16
	return &Client{base: u, http: &http.Client{Transport: tr}}, nil
}

// Address is the server's base URL.
func (c *Client) Address() string { return c.base.String() }

func (c *Client) url(path string, q url.Values) string {
	// path is already escaped (see seg): append it to the escaped base, since
	// setting URL.Path would escape the escapes again.
	s := c.base.String() + path
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// seg escapes one path segment, including the brackets of allocation names.
func seg(s string) string { return url.PathEscape(s) }

// do sends a request with an optional JSON body and decodes a JSON answer
// into out (when out is not nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	resp, err := c.send(ctx, method, path, q, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("api: decoding answer to %s %s: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns the response if it is 2xx; otherwise it
// returns the server's *Error.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("api: encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), body)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s (is it running? set --server or HERD_ADDR): %w", ErrUnreachable, c.base, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	apiErr := &Error{}
	if json.Unmarshal(b, apiErr) != nil || apiErr.Message == "" {
		apiErr = &Error{Status: resp.StatusCode, Reason: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(b))}
		if apiErr.Message == "" {
			apiErr.Message = resp.Status
		}
	}
	apiErr.Status = resp.StatusCode
	return nil, apiErr
}

func nsPath(ns string) string {
	if ns == "" {
		ns = DefaultNamespace
	}
	return "/v1/namespaces/" + seg(ns)
}

// --- jobs ---

// CreateJob creates a job; 409 if it exists.
func (c *Client) CreateJob(ctx context.Context, j *Job) (*Job, error) {
	var out Job
	return &out, c.do(ctx, http.MethodPost, nsPath(j.Namespace)+"/jobs", nil, j, &out)
}

// PutJob creates or updates a job. With j.ResourceVersion set the update is
// conditional (409 if the job changed since); without it, it overwrites.
func (c *Client) PutJob(ctx context.Context, j *Job) (*Job, error) {
	var out Job
	return &out, c.do(ctx, http.MethodPut, nsPath(j.Namespace)+"/jobs/"+seg(j.Name), nil, j, &out)
}

// GetJob returns one job.
func (c *Client) GetJob(ctx context.Context, ns, name string) (*Job, error) {
	var out Job
	return &out, c.do(ctx, http.MethodGet, nsPath(ns)+"/jobs/"+seg(name), nil, nil, &out)
}

// ListJobs lists the jobs of a namespace, or of all namespaces when ns is "".
func (c *Client) ListJobs(ctx context.Context, ns string) (*List[Job], error) {
	var out List[Job]
	path := "/v1/jobs"
	if ns != "" {
		path = nsPath(ns) + "/jobs"
	}
	return &out, c.do(ctx, http.MethodGet, path, nil, nil, &out)
}

// DeleteJob deletes a job; its allocations are stopped and then collected.
func (c *Client) DeleteJob(ctx context.Context, ns, name string) error {
	return c.do(ctx, http.MethodDelete, nsPath(ns)+"/jobs/"+seg(name), nil, nil, nil)
}

// ScaleJob sets the count of a group of a job.
func (c *Client) ScaleJob(ctx context.Context, ns, name string, req ScaleRequest) (*Job, error) {
	var out Job
	return &out, c.do(ctx, http.MethodPost, nsPath(ns)+"/jobs/"+seg(name)+"/scale", nil, req, &out)
}

// --- allocations ---

// AllocFilter selects allocations. Empty fields match everything.
type AllocFilter struct {
	Namespace string
	Job       string
	Node      string
}

func (f AllocFilter) query() url.Values {
	q := url.Values{}
	if f.Job != "" {
		q.Set("job", f.Job)
	}
	if f.Node != "" {
		q.Set("node", f.Node)
	}
	return q
}

// ListAllocs lists allocations.
func (c *Client) ListAllocs(ctx context.Context, f AllocFilter) (*List[Allocation], error) {
	var out List[Allocation]
	path := "/v1/allocs"
	if f.Namespace != "" {
		path = nsPath(f.Namespace) + "/allocs"
	}
	return &out, c.do(ctx, http.MethodGet, path, f.query(), nil, &out)
}

// GetAlloc returns one allocation.
func (c *Client) GetAlloc(ctx context.Context, ns, name string) (*Allocation, error) {
	var out Allocation
	return &out, c.do(ctx, http.MethodGet, nsPath(ns)+"/allocs/"+seg(name), nil, nil, &out)
}

// ReportAllocStatus records what an agent observed of an allocation.
func (c *Client) ReportAllocStatus(ctx context.Context, ns, name string, r AllocStatusReport) (*Allocation, error) {
	var out Allocation
	return &out, c.do(ctx, http.MethodPut, nsPath(ns)+"/allocs/"+seg(name)+"/status", nil, r, &out)
}

// LogOptions selects what Logs returns.
type LogOptions struct {
	// Task names the task; it may be empty when the group has one task.
	Task string
	// Stream is "stdout" (default) or "stderr".
	Stream string
	// Follow keeps the stream open and sends new output as it is written.
	Follow bool
	// Tail, if > 0, starts that many lines before the end.
	Tail int
}

func (o LogOptions) query() url.Values {
	q := url.Values{}
	if o.Task != "" {
		q.Set("task", o.Task)
	}
	if o.Stream != "" {
		q.Set("stream", o.Stream)
	}
	if o.Follow {
		q.Set("follow", "true")
	}
	if o.Tail > 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	return q
}

// Logs streams a task's output. The caller closes the reader.
func (c *Client) Logs(ctx context.Context, ns, alloc string, o LogOptions) (io.ReadCloser, error) {
	resp, err := c.send(ctx, http.MethodGet, nsPath(ns)+"/allocs/"+seg(alloc)+"/logs", o.query(), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// --- nodes ---

// RegisterNode creates or updates a node as its agent sees it. The server
// keeps the operator's availability of an existing node.
func (c *Client) RegisterNode(ctx context.Context, n *Node) (*Node, error) {
	var out Node
	return &out, c.do(ctx, http.MethodPut, "/v1/nodes/"+seg(n.Name), nil, n, &out)
}

// Heartbeat tells the server that the node's agent is alive.
func (c *Client) Heartbeat(ctx context.Context, node string, hb Heartbeat) error {
	return c.do(ctx, http.MethodPost, "/v1/nodes/"+seg(node)+"/heartbeat", nil, hb, nil)
}

// ListNodes lists nodes.
func (c *Client) ListNodes(ctx context.Context) (*List[Node], error) {
	var out List[Node]
	return &out, c.do(ctx, http.MethodGet, "/v1/nodes", nil, nil, &out)
}

// GetNode returns one node.
func (c *Client) GetNode(ctx context.Context, name string) (*Node, error) {
	var out Node
	return &out, c.do(ctx, http.MethodGet, "/v1/nodes/"+seg(name), nil, nil, &out)
}

// SetAvailability sets a node's availability (active, pause, drain).
func (c *Client) SetAvailability(ctx context.Context, name string, a Availability) (*Node, error) {
	var out Node
	return &out, c.do(ctx, http.MethodPut, "/v1/nodes/"+seg(name)+"/availability", nil, AvailabilityRequest{Availability: a}, &out)
}

// --- events ---

// EventFilter selects events. Empty fields match everything.
type EventFilter struct {
	Namespace string
	Kind      string
	Name      string
}

// ListEvents lists recent events, oldest first.
func (c *Client) ListEvents(ctx context.Context, f EventFilter) (*List[Event], error) {
	q := url.Values{}
	if f.Namespace != "" {
		q.Set("namespace", f.Namespace)
	}
	if f.Kind != "" {
		q.Set("kind", f.Kind)
	}
	if f.Name != "" {
		q.Set("name", f.Name)
	}
	var out List[Event]
	return &out, c.do(ctx, http.MethodGet, "/v1/events", q, nil, &out)
}

// --- namespaces ---

// ListNamespaces lists namespaces.
func (c *Client) ListNamespaces(ctx context.Context) (*List[Namespace], error) {
	var out List[Namespace]
	return &out, c.do(ctx, http.MethodGet, "/v1/namespaces", nil, nil, &out)
}

// PutNamespace creates a namespace if it does not exist.
func (c *Client) PutNamespace(ctx context.Context, name string) (*Namespace, error) {
	var out Namespace
	return &out, c.do(ctx, http.MethodPut, "/v1/namespaces/"+seg(name), nil, &Namespace{Meta: Meta{Name: name}}, &out)
}

// --- watch ---

// WatchOptions selects the objects of a watch. Kind is "jobs", "allocs",
// "nodes" or "events".
type WatchOptions struct {
	Namespace string
	Job       string
	Node      string
	// ResourceVersion starts the watch after that revision (as returned by a
	// list or carried by an earlier event). Empty starts with an ADDED event
	// for every current object.
	ResourceVersion string
}

// Watcher reads a watch stream.
type Watcher struct {
	body io.ReadCloser
	sc   *bufio.Scanner
}

// Watch opens a watch stream of kind ("jobs", "allocs", "nodes", "events").
// A 410 Gone error means the resource version is too old: list again and
// watch from the list's version.
func (c *Client) Watch(ctx context.Context, kind string, o WatchOptions) (*Watcher, error) {
	q := url.Values{}
	if o.Namespace != "" {
		q.Set("namespace", o.Namespace)
	}
	if o.Job != "" {
		q.Set("job", o.Job)
	}
	if o.Node != "" {
		q.Set("node", o.Node)
	}
	if o.ResourceVersion != "" {
		q.Set("resourceVersion", o.ResourceVersion)
	}
	resp, err := c.send(ctx, http.MethodGet, "/v1/watch/"+seg(kind), q, nil)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	return &Watcher{body: resp.Body, sc: sc}, nil
}

// Next returns the next event. It returns io.EOF when the server ended the
// stream, and the server's *Error for an ERROR event.
func (w *Watcher) Next() (WatchEvent, error) {
	for w.sc.Scan() {
		line := w.sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev WatchEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return WatchEvent{}, fmt.Errorf("api: bad watch event: %w", err)
		}
		if ev.Type == WatchError {
			apiErr := &Error{}
			if err := ev.Decode(apiErr); err != nil {
				return WatchEvent{}, fmt.Errorf("api: watch error: %s", ev.Object)
			}
			return WatchEvent{}, apiErr
		}
		return ev, nil
	}
	if err := w.sc.Err(); err != nil {
		return WatchEvent{}, err
	}
	return WatchEvent{}, io.EOF
}

// Close ends the stream.
func (w *Watcher) Close() error { return w.body.Close() }
