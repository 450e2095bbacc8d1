package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// testVersion is stamped into the herd binary under test with -ldflags.
const testVersion = "v0.0.0-e2e"

// Binaries built by TestMain.
var (
	herdBin    string
	etcdctlBin string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "herd-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	herdBin = filepath.Join(dir, "herd")
	etcdctlBin = filepath.Join(dir, "etcdctl")
	herdArgs := []string{"-ldflags", "-X github.com/herd-project/herd/internal/cli.Version=" + testVersion}
	if raceEnabled {
		herdArgs = append(herdArgs, "-race")
	}
	if err := goBuild(herdBin, "github.com/herd-project/herd/cmd/herd", herdArgs...); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if err := goBuild(etcdctlBin, "go.etcd.io/etcd/etcdctl/v3"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// goBuild builds pkg into out with the go command running the tests.
func goBuild(out, pkg string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmdArgs := append([]string{"build", "-o", out}, args...)
	cmdArgs = append(cmdArgs, pkg)
	cmd := exec.CommandContext(ctx, "go", cmdArgs...)
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(cmdArgs, " "), err, output)
	}
	return nil
}

// etcdctlVersionRE matches the first line of `etcdctl version`.
var etcdctlVersionRE = regexp.MustCompile(`etcdctl version: (\S+)`)

// etcdctlVersion asks an etcdctl binary for its version.
func etcdctlVersion(bin string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "version")
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s version: %w\n%s", bin, err, out)
	}
	m := etcdctlVersionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s version: unexpected output %q", bin, out)
	}
	return string(m[1]), nil
}
