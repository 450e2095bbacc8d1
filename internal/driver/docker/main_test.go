package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

// Set by TestMain.
var (
	dockerUnavailable string // why the daemon cannot be used, or ""
	testProgPath      string // static test program, also the pause binary
	testImage         string // herd-test-prog:<hash>
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		_, err = c.Ping(ctx)
	}
	if err != nil {
		dockerUnavailable = err.Error()
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "docker is required when CI is set:", err)
			return 1
		}
		return m.Run()
	}
	defer c.Close()
	dir, err := os.MkdirTemp("", "herd-docker-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	testProgPath = filepath.Join(dir, "testprog")
	build := exec.Command("go", "build", "-o", testProgPath, "./testdata/testprog")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build test program: %v\n%s", err, out)
		return 1
	}
	data, err := os.ReadFile(testProgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sum := sha256.Sum256(data)
	testImage = "herd-test-prog:" + hex.EncodeToString(sum[:])[:16]
	if err := buildScratchImage(ctx, c, testImage, testProgPath, "testprog", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	cleanupDocker(c)
	return code
}

// cleanupDocker removes the test containers and the images the tests built.
func cleanupDocker(c *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, _ := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelAllocUID))})
	for _, ct := range list {
		if strings.HasPrefix(ct.Labels[labelAllocUID], "test-") {
			c.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true})
		}
	}
	c.ImageRemove(ctx, testImage, image.RemoveOptions{Force: true, PruneChildren: true})
	c.ImageRemove(ctx, inspectPauseBinary(testProgPath).tag, image.RemoveOptions{Force: true, PruneChildren: true})
}

func requireDocker(t *testing.T) {
	t.Helper()
	if dockerUnavailable != "" {
		t.Skip("docker daemon unreachable and CI unset, skipping: " + dockerUnavailable)
	}
}

func newTestDriver(t *testing.T, stateDir string) *Driver {
	t.Helper()
	requireDocker(t)
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	d, err := New(Config{StateDir: stateDir, PauseBinary: testProgPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

var allocSeq int

// testRequest runs the test program (the image's entrypoint) with args in
// a fresh allocation.
func testRequest(t *testing.T, task string, args ...string) driver.StartRequest {
	allocSeq++
	uid := fmt.Sprintf("test-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6, allocSeq)
	req := driver.StartRequest{
		ID: driver.TaskID{AllocUID: uid, Task: task}, Namespace: "default", AllocName: "job.web[0]",
		Task:   api.Task{Name: task, Driver: Name, Config: api.TaskConfig{Image: testImage, PullPolicy: "never"}},
		LogDir: t.TempDir(),
	}
	if len(args) > 0 {
		req.Task.Config.Command, req.Task.Config.Args = args[0], args[1:]
	}
	return req
}

// start starts req and, at the end of the test, kills and removes it.
func start(t *testing.T, d *Driver, req driver.StartRequest) *driver.Handle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := d.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d.Stop(ctx, req.ID, 0)
		if err := d.Destroy(ctx, req.ID); err != nil && !strings.Contains(err.Error(), "not found") {
			t.Errorf("cleanup: %v", err)
		}
	})
	return h
}

func wait(t *testing.T, d *Driver, id driver.TaskID) driver.ExitResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := d.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	res, ok := <-ch
	if !ok {
		t.Fatalf("no exit of %s within the deadline", id)
	}
	return res
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func readLog(t *testing.T, dir, stream string) string {
	data, _ := os.ReadFile(filepath.Join(dir, stream+".log"))
	return string(data)
}
