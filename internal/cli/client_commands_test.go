package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/herd-project/herd/api"
)

// clientCommands builds a root holding the commands that talk to the API
// server, wired as root.go wires them but with a fixed clock.
func clientCommands() *cobra.Command {
	clock := clockwork.NewFakeClockAt(fixedNow)
	root := &cobra.Command{Use: "herd", SilenceErrors: true, SilenceUsage: true}
	root.AddCommand(newApplyCommand(), getCommand(clock), describeCommand(clock), newScaleCommand(),
		newLogsCommand(), newDeleteCommand(), newDrainCommand())
	classifyErrors(root)
	return root
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs the client commands with args and stdin.
func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	return runCLIContext(context.Background(), t, stdin, new(bytes.Buffer), args...)
}

// outputBuffer is where a test collects a command's standard output.
type outputBuffer interface {
	io.Writer
	String() string
}

func runCLIContext(ctx context.Context, t *testing.T, stdin string, stdout outputBuffer, args ...string) cliResult {
	t.Helper()
	root := clientCommands()
	root.SetIn(strings.NewReader(stdin))
	var stderr bytes.Buffer
	code := execute(ctx, root, args, stdout, &stderr)
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func (r cliResult) check(t *testing.T, wantCode int, wantStdout, wantStderr string) {
	t.Helper()
	if r.code != wantCode {
		t.Errorf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, wantCode, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, wantStdout) {
		t.Errorf("stdout does not contain %q:\n%s", wantStdout, r.stdout)
	}
	if !strings.Contains(r.stderr, wantStderr) {
		t.Errorf("stderr does not contain %q:\n%s", wantStderr, r.stderr)
	}
}

const webJobFile = `
metadata:
  name: web
spec:
  groups:
    - name: web
      count: 3
      tasks:
        - name: web
          config:
            command: /bin/sh
            args: [-c, "sleep 100"]
          resources: {cpu: 100, memory: 33554432}
`

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestApply(t *testing.T) {
	fake, srv := newFakeAPI(t)
	file := writeFile(t, webJobFile)

	runCLI(t, "", "apply", "-f", file, "--server", srv.URL).check(t, ExitOK, "job/web created\n", "")
	if j := fake.job("default", "web"); j == nil || j.Spec.Groups[0].Count != 3 {
		t.Fatalf("stored job = %+v", j)
	}
	runCLI(t, "", "apply", "-f", file, "--server", srv.URL).check(t, ExitOK, "job/web unchanged\n", "")

	scaled := strings.Replace(webJobFile, "count: 3", "count: 5", 1)
	runCLI(t, scaled, "apply", "-f", "-", "--server", srv.URL).check(t, ExitOK, "job/web configured\n", "")
	if got := fake.job("default", "web").Spec.Groups[0].Count; got != 5 {
		t.Errorf("count after apply = %d, want 5", got)
	}
	// The update was conditional on the version read.
	var puts int
	for _, req := range fake.requestLog() {
		if strings.HasPrefix(req, "PUT ") {
			puts++
		}
	}
	if puts != 1 {
		t.Errorf("PUT requests = %d, want 1 (unchanged applies write nothing): %v", puts, fake.requestLog())
	}
}

func TestApplyRetriesWhenTheJobChangesInBetween(t *testing.T) {
	fake, srv := newFakeAPI(t)
	fake.addJob(api.Job{Meta: api.Meta{Name: "web", Namespace: "default"}, Spec: api.JobSpec{Type: api.JobService,
		Priority: 50, Groups: []api.Group{webGroup(1)}}})
	changes := 0
	fake.beforeJobPut = func() {
		if changes < 2 { // a controller writes the job's status twice
			changes++
			fake.rev++
			fake.jobs["default/web"].ResourceVersion = fmt.Sprint(fake.rev)
		}
	}
	runCLI(t, "", "apply", "-f", writeFile(t, webJobFile), "--server", srv.URL).check(t, ExitOK, "job/web configured\n", "")
	if got := fake.job("default", "web").Spec.Groups[0].Count; got != 3 {
		t.Errorf("count = %d, want 3", got)
	}
}

func TestApplyNamespace(t *testing.T) {
	fake, srv := newFakeAPI(t)
	runCLI(t, webJobFile, "apply", "-f", "-", "-n", "shop", "--server", srv.URL).check(t, ExitOK, "job/web created", "")
	if fake.job("shop", "web") == nil {
		t.Error("job not created in namespace shop")
	}
	inProd := strings.Replace(webJobFile, "name: web\n", "name: web\n  namespace: prod\n", 1)
	runCLI(t, inProd, "apply", "-f", "-", "-n", "shop", "--server", srv.URL).
		check(t, ExitError, "", `the file's namespace "prod" does not match --namespace "shop"`)
	runCLI(t, inProd, "apply", "-f", "-", "--server", srv.URL).check(t, ExitOK, "job/web created", "")
	if fake.job("prod", "web") == nil {
		t.Error("job not created in namespace prod")
	}
}

func TestApplyInvalidJobFile(t *testing.T) {
	fake, srv := newFakeAPI(t)
	bad := `
metadata:
  name: Web
spec:
  type: cron
  groups:
    - name: web
      count: -1
      tasks:
        - name: web
          config: {command: ""}
          resources: {memory: -5}
`
	res := runCLI(t, "", "apply", "-f", writeFile(t, bad), "--server", srv.URL)
	res.check(t, ExitError, "", "is invalid:\n")
	for _, want := range []string{
		"  metadata.name: must consist of lower case letters",
		"  spec.type: must be \"service\" or \"batch\", not \"cron\"",
		"  spec.groups[0].count: must be between 0 and 10000",
		"  spec.groups[0].tasks[0].config.command: is required",
		"  spec.groups[0].tasks[0].resources.memory: must be >= 0 (bytes)",
	} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
		}
	}
	if reqs := fake.requestLog(); len(reqs) != 0 {
		t.Errorf("an invalid job reached the server: %v", reqs)
	}

	misspelt := strings.Replace(webJobFile, "count: 3", "cuont: 3", 1)
	runCLI(t, misspelt, "apply", "-f", "-", "--server", srv.URL).check(t, ExitError, "", `unknown field "cuont"`)
	runCLI(t, "", "apply", "-f", filepath.Join(t.TempDir(), "missing.yaml"), "--server", srv.URL).
		check(t, ExitError, "", "no such file")
	runCLI(t, "", "apply", "--server", srv.URL).check(t, ExitUsage, "", "-f is required")
}

func TestServerRejectionListsFields(t *testing.T) {
	_, srv := newFakeAPI(t)
	// A server with stricter rules than the CLI reports its field problems,
	// one per line.
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			writeAPIError(w, http.StatusNotFound, api.ReasonNotFound, "not found")
			return
		}
		w.WriteHeader(http.StatusUnprocessableEntity)
		_ = json.NewEncoder(w).Encode(api.Error{Status: 422, Reason: api.ReasonInvalid, Message: "job web is invalid",
			Details: api.FieldErrors{{Field: "spec.groups[0].count", Message: "exceeds the namespace quota"}}})
	})
	runCLI(t, webJobFile, "apply", "-f", "-", "--server", srv.URL).
		check(t, ExitError, "", "Error: job web is invalid:\n  spec.groups[0].count: exceeds the namespace quota\n")
}

func seedCluster(fake *fakeAPI) {
	for _, j := range fixtureJobs() {
		fake.addJob(j)
	}
	for _, a := range fixtureAllocs() {
		fake.addAlloc(a)
	}
	for _, n := range fixtureNodes() {
		fake.addNode(n)
	}
	fake.events = fixtureEvents()
}

func TestGet(t *testing.T) {
	fake, srv := newFakeAPI(t)
	seedCluster(fake)
	s := "--server=" + srv.URL
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{[]string{"get", "jobs", s}, ExitOK,
			"NAME     TYPE      STATUS    GROUPS    AGE\nreport   batch     failed    web 0/2   1h\nweb      service   running   web 2/3   3m\n", ""},
		{[]string{"get", "job", "web", s}, ExitOK, "NAME   TYPE      STATUS    GROUPS    AGE\nweb    service   running   web 2/3   3m\n", ""},
		{[]string{"get", "job/web", s}, ExitOK, "web    service   running", ""},
		{[]string{"get", "jobs", "-A", s}, ExitOK, "prod        shop     service", ""},
		{[]string{"get", "jobs", "-n", "prod", s}, ExitOK, "shop   service   running   web 1/1, cache 2/2   2d", ""},
		{[]string{"get", "jobs", "-n", "empty", s}, ExitOK, "", "No resources found in namespace empty.\n"},
		{[]string{"get", "job", "nope", s}, ExitError, "", `job "nope" not found in namespace default`},
		{[]string{"get", "allocs", "--job", "web", s}, ExitOK, "web.web[2]    pending   run       <none>", ""},
		{[]string{"get", "allocations", "--node", "n2", "-o", "wide", s}, ExitOK, "web.web[1]   failed   run       n2     2          3m    uid-b", ""},
		{[]string{"get", "alloc", "web.web[10]", s}, ExitOK, "web.web[10]   running   stop      n1", ""},
		{[]string{"get", "nodes", s}, ExitOK, "n1     ready    active         10.0.0.1:7081   3500m   7.5Gi", ""},
		{[]string{"get", "node", "n2", "-o", "wide", s}, ExitOK, "no heartbeat for 40s", ""},
		{[]string{"get", "events", "--job", "web", s}, ExitOK, "alloc/web.web[2]   0/3 nodes eligible", ""},
		{[]string{"get", "events", "-A", s}, ExitOK, "jobs        10m         Normal    Created", ""},
		{[]string{"get", "events", s}, ExitOK, "1m          Warning   PlacementFailed   alloc/web.web[2]   0/3 nodes eligible: 2 lacked memory, 1 draining\n" +
			"40s         Warning   NodeDown          node/n2            no heartbeat for 5s (grace period)\n", ""},
		{[]string{"get", "events", "-n", "jobs", s}, ExitOK, "10m         Normal    Created    job/batch   job created\n40s         Warning   NodeDown", ""},
		{[]string{"get", "pods", s}, ExitUsage, "", `unknown resource type "pods": use one of jobs, allocs, nodes, events`},
		{[]string{"get", "jobs", "-o", "xml", s}, ExitUsage, "", `-o "xml": use wide, json or yaml`},
		{[]string{"get", "nodes", "--job", "web", s}, ExitUsage, "", "--job applies to allocs and events"},
		{[]string{"get", "job", "web", "-A", s}, ExitUsage, "", "use -n rather than -A"},
		{[]string{"get", "jobs", "-n", "Bad_NS", s}, ExitUsage, "", `--namespace "Bad_NS"`},
		{[]string{"get", s}, ExitUsage, "", "accepts between 1 and 2 arg(s)"},
		{[]string{"get", "jobs", "--server", "ftp://x"}, ExitUsage, "", `--server: server address "ftp://x": scheme must be http or https`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			runCLI(t, "", tt.args...).check(t, tt.wantCode, tt.wantStdout, tt.wantStderr)
		})
	}
}

func TestGetStructuredOutput(t *testing.T) {
	fake, srv := newFakeAPI(t)
	seedCluster(fake)

	res := runCLI(t, "", "get", "allocs", "--job", "web", "-o", "json", "--server", srv.URL)
	res.check(t, ExitOK, "", "")
	var list api.List[api.Allocation]
	if err := json.Unmarshal([]byte(res.stdout), &list); err != nil {
		t.Fatalf("-o json is not a list: %v\n%s", err, res.stdout)
	}
	if len(list.Items) != 4 {
		t.Errorf("-o json listed %d allocations, want the 4 of job web", len(list.Items))
	}

	res = runCLI(t, "", "get", "job", "web", "-o", "yaml", "--server", srv.URL)
	res.check(t, ExitOK, "metadata:\n", "")
	var job api.Job
	if err := yaml.UnmarshalStrict([]byte(res.stdout), &job); err != nil {
		t.Fatalf("-o yaml is not a job: %v\n%s", err, res.stdout)
	}
	if job.Name != "web" || job.Spec.Groups[0].Count != 3 {
		t.Errorf("-o yaml job = %+v", job)
	}

	// An empty list is still a list.
	runCLI(t, "", "get", "jobs", "-n", "empty", "-o", "json", "--server", srv.URL).check(t, ExitOK, `"items": []`, "")
}

func TestDescribe(t *testing.T) {
	fake, srv := newFakeAPI(t)
	seedCluster(fake)
	s := "--server=" + srv.URL

	res := runCLI(t, "", "describe", "job", "web", s)
	res.check(t, ExitOK, "Restart Policy:  2 attempts in 30m, delay 1s, mode fail", "")
	for _, want := range []string{"Name:       web\n", "web.web[10]   running   stop", "alloc/web.web[2]   0/3 nodes eligible"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("describe job lacks %q:\n%s", want, res.stdout)
		}
	}
	if strings.Contains(res.stdout, "job/batch") {
		t.Errorf("describe job web shows events of another job:\n%s", res.stdout)
	}

	runCLI(t, "", "describe", "alloc", "web.web[2]", s).
		check(t, ExitOK, "Placement:       0/3 nodes eligible: 2 lacked memory, 1 draining\n", "")
	runCLI(t, "", "describe", "node/n1", s).check(t, ExitOK, "cpu        4          3500m         200m (5%)", "")
	runCLI(t, "", "describe", "node", "n9", s).check(t, ExitError, "", `node "n9" not found`)
	runCLI(t, "", "describe", "job", s).check(t, ExitUsage, "", "name the job")
	runCLI(t, "", "describe", "events", "x", s).check(t, ExitUsage, "", "use one of jobs, allocs, nodes")
}

func TestScale(t *testing.T) {
	fake, srv := newFakeAPI(t)
	seedCluster(fake)
	s := "--server=" + srv.URL

	runCLI(t, "", "scale", "web", "5", s).check(t, ExitOK, "job/web scaled (group web: 3 -> 5)\n", "")
	if got := fake.job("default", "web").Spec.Groups[0].Count; got != 5 {
		t.Errorf("count = %d, want 5", got)
	}
	runCLI(t, "", "scale", "web/web", "5", s).check(t, ExitOK, "job/web unchanged (group web: 5)\n", "")
	runCLI(t, "", "scale", "shop/cache", "0", "-n", "prod", s).check(t, ExitOK, "job/shop scaled (group cache: 2 -> 0)\n", "")
	runCLI(t, "", "scale", "shop", "3", "-n", "prod", s).
		check(t, ExitError, "", "job shop has 2 groups (web, cache): name one, as in shop/web")
	runCLI(t, "", "scale", "shop/db", "3", "-n", "prod", s).check(t, ExitError, "", `job shop has no group "db"`)
	runCLI(t, "", "scale", "gone", "3", s).check(t, ExitError, "", `job "gone" not found in namespace default`)
	runCLI(t, "", "scale", "web", "-1", s).check(t, ExitUsage, "", "unknown shorthand flag")
	runCLI(t, "", "scale", "web", "many", s).check(t, ExitUsage, "", `count "many": must be a whole number`)
}

func TestDeleteAndDrain(t *testing.T) {
	fake, srv := newFakeAPI(t)
	seedCluster(fake)
	s := "--server=" + srv.URL

	runCLI(t, "", "delete", "job", "web", s).check(t, ExitOK, "job/web deleted\n", "")
	if fake.job("default", "web") != nil {
		t.Error("job web still stored")
	}
	runCLI(t, "", "delete", "job/shop", "-n", "prod", s).check(t, ExitOK, "job/shop deleted\n", "")
	runCLI(t, "", "delete", "job", "web", s).check(t, ExitError, "", `job "web" not found in namespace default`)
	runCLI(t, "", "delete", "node", "n1", s).check(t, ExitUsage, "", `unknown resource type "node": use one of jobs`)

	for _, tt := range []struct {
		args  []string
		want  string
		avail api.Availability
	}{
		{[]string{"drain", "n1"}, "node/n1 draining\n", api.Drain},
		{[]string{"drain", "node/n1", "--pause"}, "node/n1 paused\n", api.Pause},
		{[]string{"drain", "n1", "--undo"}, "node/n1 active\n", api.Active},
	} {
		runCLI(t, "", append(tt.args, s)...).check(t, ExitOK, tt.want, "")
		fake.mu.Lock()
		got := fake.nodes["n1"].Spec.Availability
		fake.mu.Unlock()
		if got != tt.avail {
			t.Errorf("%v: availability = %s, want %s", tt.args, got, tt.avail)
		}
	}
	runCLI(t, "", "drain", "n1", "--undo", "--pause", s).check(t, ExitUsage, "", "none of the others can be")
	runCLI(t, "", "drain", "n9", s).check(t, ExitError, "", `node "n9" not found`)
}

func TestLogs(t *testing.T) {
	fake, srv := newFakeAPI(t)
	seedCluster(fake)
	fake.logs["web.web[0]//stdout"] = "one\ntwo\nthree\n"
	fake.logs["web.web[0]/web/stderr"] = "oops\n"
	s := "--server=" + srv.URL

	runCLI(t, "", "logs", "web.web[0]", s).check(t, ExitOK, "one\ntwo\nthree\n", "")
	runCLI(t, "", "logs", "alloc/web.web[0]", "--tail", "2", s).check(t, ExitOK, "two\nthree\n", "")
	runCLI(t, "", "logs", "web.web[0]", "web", "--stderr", s).check(t, ExitOK, "oops\n", "")
	runCLI(t, "", "logs", "web.web[0]", "db", s).check(t, ExitError, "", `no logs of task "db"`)
	runCLI(t, "", "logs", "web", s).check(t, ExitUsage, "", "want <job>.<group>[<index>]")
	runCLI(t, "", "logs", "web.web[0]", "--tail", "-3", s).check(t, ExitUsage, "", "--tail -3")

	want := "GET /v1/namespaces/default/allocs/web.web%5B0%5D/logs?stream=stderr&task=web"
	if !slices.Contains(fake.requestLog(), want) {
		t.Errorf("requests lack %q: %v", want, fake.requestLog())
	}
}

// syncBuffer is a buffer that a command writes while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLogsFollowEndsWithTheContext(t *testing.T) {
	fake, srv := newFakeAPI(t)
	fake.followLogs = func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("first line\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan cliResult, 1)
	go func() { done <- runCLIContext(ctx, t, "", out, "logs", "web.web[0]", "-f", "--server", srv.URL) }()

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "first line") {
		if time.Now().After(deadline) {
			t.Fatalf("no output within 10s: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case res := <-done:
		t.Fatalf("logs -f returned while the stream was open: %+v", res)
	default:
	}
	cancel()
	select {
	case res := <-done:
		res.check(t, ExitOK, "first line\n", "")
	case <-time.After(10 * time.Second):
		t.Fatal("logs -f did not end with its context")
	}
}

func TestUnreachableServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()

	for _, args := range [][]string{
		{"get", "jobs"},
		{"apply", "-f", writeFile(t, webJobFile)},
		{"describe", "node", "n1"},
		{"scale", "web", "2"},
		{"logs", "web.web[0]"},
		{"delete", "job", "web"},
		{"drain", "n1"},
	} {
		t.Run(args[0], func(t *testing.T) {
			res := runCLI(t, "", append(args, "--server", addr)...)
			want := fmt.Sprintf("Error: cannot reach the herd API server at %s: dial tcp %s: connect: connection refused "+
				"(start one with 'herd up', or set --server / HERD_ADDR)\n", addr, strings.TrimPrefix(addr, "http://"))
			if res.code != ExitError || res.stderr != want {
				t.Errorf("exit code %d, stderr:\n%s\nwant exit code 1 and:\n%s", res.code, res.stderr, want)
			}
		})
	}
}

func TestServerAddressFromEnvironment(t *testing.T) {
	fake, srv := newFakeAPI(t)
	seedCluster(fake)
	t.Setenv(envServer, srv.URL)
	runCLI(t, "", "get", "nodes").check(t, ExitOK, "n1 ", "")
}

func TestEveryClientCommandHasHelpWithAnExample(t *testing.T) {
	for _, cmd := range clientCommands().Commands() {
		if cmd.Example == "" || cmd.Short == "" {
			t.Errorf("herd %s: Short and Example must explain it", cmd.Name())
		}
		res := runCLI(t, "", cmd.Name(), "--help")
		res.check(t, ExitOK, "Examples:\n", "")
		if !strings.Contains(res.stdout, "--server") {
			t.Errorf("herd %s --help does not list --server", cmd.Name())
		}
	}
}

// TestAllocNamesReachTheServerEscapedOnce guards the path escaping of the
// API client that every command relies on: an allocation name's brackets
// travel as %5B and %5D, so the server's router sees "web.web[0]".
func TestAllocNamesReachTheServerEscapedOnce(t *testing.T) {
	fake, srv := newFakeAPI(t)
	seedCluster(fake)
	c, err := api.NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAlloc(context.Background(), "default", "web.web[0]"); err != nil {
		t.Errorf("GetAlloc(web.web[0]): %v; requests as sent: %v (api.Client.url must not escape the "+
			"segments seg already escaped)", err, fake.requestLog())
	}
}
