package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/api"
)

// requireDocker skips the test when no Docker daemon answers, unless CI is
// set: CI machines must have one, so there the test runs (and fails).
func requireDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version").CombinedOutput()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skipf("docker is unreachable (`docker version`: %v) and CI is unset, skipping\n%s", err, out)
	}
	t.Logf("CI is set, so the test runs although `docker version` failed: %v\n%s", err, out)
}

// docker runs the docker CLI and fails the test on a non-zero exit.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerOutput(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dockerOutput(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// buildWebImage builds examples/web-container into an image FROM scratch,
// as its build.sh does, tagged herd-e2e-web:<unique>; the image is removed
// when the test ends.
func buildWebImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "web"), "github.com/herd-project/herd/examples/web-container")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the web server: %v\n%s", err, out)
	}
	dockerfile, err := os.ReadFile(filepath.Join("..", "examples", "web-container", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), dockerfile, 0o644); err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("herd-e2e-web:%d-%d", os.Getpid(), time.Now().UnixNano())
	docker(t, "build", "-q", "-t", tag, dir)
	t.Cleanup(func() {
		if _, err := dockerOutput("image", "rm", "-f", tag); err != nil {
			t.Errorf("remove the test image: %v", err)
		}
	})
	return tag
}

// jobContainer is a task container of a herd allocation, as docker ps
// shows it.
type jobContainer struct {
	id, allocName, allocUID, state string
}

// jobContainers lists the task containers of job's allocations (not their
// pause containers, which carry herd.pause=true and no herd.task label);
// all includes stopped ones.
func jobContainers(t *testing.T, job string, all bool) []jobContainer {
	t.Helper()
	args := []string{"ps", "--no-trunc", "--filter", "label=herd.task",
		"--format", `{{.ID}}	{{.Label "herd.alloc.name"}}	{{.Label "herd.alloc.uid"}}	{{.State}}`}
	if all {
		args = append(args, "-a")
	}
	var list []jobContainer
	for line := range strings.Lines(docker(t, args...)) {
		f := strings.Split(strings.TrimSpace(line), "\t")
		if len(f) != 4 || !strings.HasPrefix(f[1], job+".") {
			continue
		}
		list = append(list, jobContainer{id: f[0], allocName: f[1], allocUID: f[2], state: f[3]})
	}
	return list
}

// removeJobContainers is the safety net that leaves no container of job
// behind a test: every container (task or pause) of the allocations whose
// task containers are left.
func removeJobContainers(t *testing.T, job string) {
	t.Cleanup(func() {
		for _, c := range jobContainers(t, job, true) {
			ids := strings.Fields(docker(t, "ps", "-aq", "--filter", "label=herd.alloc.uid="+c.allocUID))
			if len(ids) > 0 {
				_, _ = dockerOutput(append([]string{"rm", "-f"}, ids...)...)
			}
		}
	})
}

// waitContainers waits until exactly n task containers of job run and
// returns them.
func waitContainers(t *testing.T, job string, n int) []jobContainer {
	t.Helper()
	var list []jobContainer
	waitFor(t, converge, fmt.Sprintf("%d running containers of %s", n, job), func() (bool, string) {
		list = jobContainers(t, job, false)
		return len(list) == n, fmt.Sprintf("%+v", list)
	})
	return list
}

// publishedPort returns the host address of container port 8080/tcp of an
// allocation. With a static herd binary the allocation's pause container
// owns the network namespace and the ports; otherwise the task container
// has them: look at every container of the allocation.
func publishedPort(t *testing.T, allocUID string) string {
	t.Helper()
	ids := strings.Fields(docker(t, "ps", "-q", "--filter", "label=herd.alloc.uid="+allocUID))
	for _, id := range ids {
		out, err := dockerOutput("port", id, "8080/tcp")
		if err != nil {
			continue
		}
		for line := range strings.Lines(out) {
			addr := strings.TrimSpace(line)
			// Prefer the IPv4 binding ("0.0.0.0:49153"); "[::]:49153" may
			// be absent on hosts without IPv6.
			if host, port, ok := strings.Cut(addr, ":"); ok && !strings.HasPrefix(host, "[") {
				return "127.0.0.1:" + port
			}
		}
	}
	t.Fatalf("no container of allocation %s publishes 8080/tcp (containers %v)", allocUID, ids)
	return ""
}

func webContainerJob(name, image string, count int) string {
	return fmt.Sprintf(`metadata: {name: %s}
spec:
  type: service
  groups:
  - name: web
    count: %d
    tasks:
    - name: web
      driver: docker
      config:
        image: %s
        pullPolicy: never
        portMap: [{name: http, containerPort: 8080, hostPort: 0}]
      resources: {cpu: 100, memory: 67108864}
      killTimeout: 2s
`, name, count, image)
}

// TestDockerService: the example container service under `herd up`: two
// containers serving on published ports, logs, scale to three, delete →
// no container left.
func TestDockerService(t *testing.T) {
	requireDocker(t)
	image := buildWebImage(t)
	job := fmt.Sprintf("dweb-%d", time.Now().UnixNano()%1_000_000_000)
	removeJobContainers(t, job)
	up, server := startUp(t)
	c := apiClient(t, server)
	waitFor(t, converge, "node n1 ready with the docker driver", func() (bool, string) {
		n, err := c.GetNode(context.Background(), "n1")
		if err != nil {
			return false, err.Error()
		}
		return n.Status.Status == api.NodeReady && slices.Contains(n.Status.Drivers, "docker"), fmt.Sprintf("%+v", n.Status)
	})

	cli(t, server, "apply", "-f", writeFile(t, "web.yaml", webContainerJob(job, image, 2)))
	allocs := waitRunning(t, c, job, 2, nil)
	containers := waitContainers(t, job, 2)
	for _, a := range allocs {
		ids := strings.Fields(docker(t, "ps", "-q", "--filter", "label=herd.alloc.name="+a.Name, "--filter", "label=herd.task=web"))
		if len(ids) != 1 {
			t.Fatalf("docker ps shows %d task containers of %s, want 1: %v", len(ids), a.Name, containers)
		}
	}

	a := allocs[0]
	url := "http://" + publishedPort(t, a.UID) + "/"
	waitFor(t, converge, "an answer from "+url, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return err == nil && string(body) == "hello from "+a.Name+"\n", fmt.Sprintf("%d %q %v", resp.StatusCode, body, err)
	})
	waitFor(t, converge, "the server's startup line in herd logs", func() (bool, string) {
		logs, errOut, code := runHerd(t, "logs", a.Name, "--stderr", "--server", server)
		return code == 0 && strings.Contains(logs, a.Name+" listening on :8080"), logs + errOut
	})

	cli(t, server, "scale", job, "3")
	waitRunning(t, c, job, 3, nil)
	waitContainers(t, job, 3)

	cli(t, server, "delete", "job", job)
	waitFor(t, converge, "every container of "+job+" removed", func() (bool, string) {
		list := jobContainers(t, job, true)
		return len(list) == 0, fmt.Sprintf("%+v", list)
	})
	for _, a := range allocs {
		if ids := docker(t, "ps", "-aq", "--filter", "label=herd.alloc.uid="+a.UID); strings.TrimSpace(ids) != "" {
			t.Errorf("containers of deleted allocation %s remain (pause?): %s", a.Name, ids)
		}
	}
	up.stop()
}

// TestDockerMissingImage: a docker task whose image is absent, with pull
// policy never, fails to start and its allocation says why. A batch
// allocation stays failed; a service allocation is replaced in place at
// once (new uid, pending, placement delayed), so there the reason survives
// only in the events the replacement inherits.
func TestDockerMissingImage(t *testing.T) {
	requireDocker(t)
	const image = "herd-e2e-missing:none"
	if _, err := dockerOutput("image", "inspect", image); err == nil {
		t.Fatalf("image %s exists; remove it", image)
	}
	suffix := time.Now().UnixNano() % 1_000_000_000
	batch, service := fmt.Sprintf("dmissb-%d", suffix), fmt.Sprintf("dmisss-%d", suffix)
	removeJobContainers(t, batch)
	removeJobContainers(t, service)
	_, server := startUp(t)
	c := apiClient(t, server)
	job := func(name, typ string) string {
		return fmt.Sprintf(`metadata: {name: %s}
spec:
  type: %s
  groups:
  - name: web
    count: 1
    restartPolicy: {attempts: 0, interval: 10m, delay: 100ms, mode: fail}
    tasks:
    - name: web
      driver: docker
      config: {image: %s, pullPolicy: never}
`, name, typ, image)
	}
	cli(t, server, "apply", "-f", writeFile(t, "batch.yaml", job(batch, "batch")))
	cli(t, server, "apply", "-f", writeFile(t, "service.yaml", job(service, "service")))
	const want = "image " + image + " not present"

	// What the allocation says: its task's message and its events.
	said := func(a *api.Allocation) string {
		s := a.Status.Tasks["web"].Message
		for _, ev := range a.Status.Events {
			s += "\n" + ev.Reason + ": " + ev.Message
		}
		return s
	}
	for _, tc := range []struct {
		job    string
		status api.ClientStatus
	}{{batch, api.ClientFailed}, {service, api.ClientPending}} {
		name := api.AllocName(tc.job, "web", 0)
		waitFor(t, converge, name+" "+string(tc.status)+" saying "+want, func() (bool, string) {
			a, err := c.GetAlloc(context.Background(), "default", name)
			if err != nil {
				return false, err.Error()
			}
			return a.Status.ClientStatus == tc.status && strings.Contains(said(a), want),
				fmt.Sprintf("%s/%s %s", a.Spec.DesiredStatus, a.Status.ClientStatus, said(a))
		})
		if describe := cli(t, server, "describe", "alloc", name); !strings.Contains(describe, want) {
			t.Errorf("herd describe alloc %s does not say %q:\n%s", name, want, describe)
		}
		if list := jobContainers(t, tc.job, true); len(list) != 0 {
			t.Errorf("containers of %s exist although its image is missing: %+v", tc.job, list)
		}
		cli(t, server, "delete", "job", tc.job)
	}
}
