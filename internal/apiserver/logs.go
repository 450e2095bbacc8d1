package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/registry"
)

// allocLogs streams a task's output from the agent of the allocation's
// node: GET http://<node address>/v1/logs?alloc=<uid>&task=&stream=&follow=&tail=.
func (s *Server) allocLogs(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	q := r.URL.Query()
	snap := s.reg.Snapshot()
	a := snap.Allocs[registry.Key(ns, name)]
	if a == nil {
		return allocNotFound(ns, name)
	}
	task, err := pickTask(a, q.Get("task"))
	if err != nil {
		return err
	}
	agentQuery, err := logQuery(a.UID, task, q)
	if err != nil {
		return err
	}
	if a.Spec.Node == "" {
		return conflict("allocation %q in namespace %q is not placed on a node yet, so it has no logs", name, ns)
	}
	node := snap.Nodes[a.Spec.Node]
	if node == nil {
		return conflict("node %q of allocation %q is not registered", a.Spec.Node, name)
	}
	base, err := agentURL(node.Status.Address)
	if err != nil {
		return conflict("node %q has no usable agent address: %v", node.Name, err)
	}
	u := base.JoinPath("/v1/logs")
	u.RawQuery = agentQuery.Encode()

	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("logs request: %w", err)
	}
	resp, err := s.agents.Do(req)
	if err != nil {
		if r.Context().Err() != nil {
			return nil // the client left
		}
		return apiErr(http.StatusBadGateway, api.ReasonUnavailable,
			"the agent of node %q at %s is unreachable: %v", node.Name, node.Status.Address, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return agentError(node.Name, resp)
	}

	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a followed log outlives any write timeout
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return nil
			}
			_ = rc.Flush()
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) && r.Context().Err() == nil {
				s.log.Warn("apiserver: log stream from agent broke", "node", node.Name, "alloc", name, "err", rerr)
			}
			return nil
		}
	}
}

// pickTask returns the task a logs request names; an empty name means the
// group's only task.
func pickTask(a *api.Allocation, task string) (string, error) {
	names := make([]string, len(a.Spec.GroupSpec.Tasks))
	for i, t := range a.Spec.GroupSpec.Tasks {
		names[i] = t.Name
		if t.Name == task {
			return task, nil
		}
	}
	list := strings.Join(names, ", ")
	switch {
	case task != "":
		return "", badRequest("allocation %q has no task %q; its tasks are %s", a.Name, task, list)
	case len(names) == 1:
		return names[0], nil
	case len(names) == 0:
		return "", conflict("allocation %q has no tasks", a.Name)
	}
	return "", badRequest("allocation %q has tasks %s: name one with task=", a.Name, list)
}

// logQuery checks a logs request's options and builds the agent's query.
func logQuery(uid, task string, q url.Values) (url.Values, error) {
	out := url.Values{"alloc": {uid}, "task": {task}}
	switch stream := q.Get("stream"); stream {
	case "":
	case "stdout", "stderr":
		out.Set("stream", stream)
	default:
		return nil, badRequest("stream must be stdout or stderr, not %q", stream)
	}
	if v := q.Get("follow"); v != "" {
		follow, err := strconv.ParseBool(v)
		if err != nil {
			return nil, badRequest("follow must be true or false, not %q", v)
		}
		out.Set("follow", strconv.FormatBool(follow))
	}
	if v := q.Get("tail"); v != "" {
		tail, err := strconv.Atoi(v)
		if err != nil || tail < 0 {
			return nil, badRequest("tail must be a non-negative number of lines, not %q", v)
		}
		out.Set("tail", strconv.Itoa(tail))
	}
	return out, nil
}

// agentURL is the base URL of an agent registered at address (host:port,
// or a URL).
func agentURL(address string) (*url.URL, error) {
	if address == "" {
		return nil, errors.New("the node registered no address")
	}
	if !strings.Contains(address, "://") {
		address = "http://" + address
	}
	u, err := url.Parse(address)
	if err != nil {
		return nil, err
	}
	if u.Host == "" {
		return nil, fmt.Errorf("address %q has no host", address)
	}
	return u, nil
}

// agentError relays an agent's error answer, as an api.Error.
func agentError(node string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &api.Error{}
	if json.Unmarshal(b, e) != nil || e.Message == "" {
		msg := strings.TrimSpace(string(b))
		if msg == "" {
			msg = resp.Status
		}
		e = &api.Error{Reason: reasonFor(resp.StatusCode), Message: msg}
	}
	e.Status = resp.StatusCode
	e.Message = fmt.Sprintf("agent of node %q: %s", node, e.Message)
	return e
}

// reasonFor is the api.Error reason of an HTTP status.
func reasonFor(code int) string {
	switch code {
	case http.StatusBadRequest:
		return api.ReasonBadRequest
	case http.StatusNotFound:
		return api.ReasonNotFound
	case http.StatusConflict:
		return api.ReasonConflict
	case http.StatusGone:
		return api.ReasonGone
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return api.ReasonUnavailable
	}
	return api.ReasonInternal
}
