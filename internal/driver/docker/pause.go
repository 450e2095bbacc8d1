package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// pauseEnv is set in the pause container; RunPauseIfRequested looks for it.
const pauseEnv = "HERD_PAUSE"

// RunPauseIfRequested turns the process into the pause process of a group's
// network namespace when HERD_PAUSE=1 is set: it sleeps until SIGTERM or
// SIGINT and exits 0. Otherwise it returns at once. main calls it first.
func RunPauseIfRequested() {
	if os.Getenv(pauseEnv) != "1" {
		return
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	os.Exit(0)
}

// pauseBinary is the binary put into the pause image.
type pauseBinary struct {
	path string
	// tag is herd-pause:<first 16 hex digits of the binary's sha256>.
	tag string
	// unusable explains why the binary cannot run FROM scratch, or is "".
	unusable string
}

// inspectPauseBinary hashes path and checks that it is a static ELF
// executable.
func inspectPauseBinary(path string) pauseBinary {
	pb := pauseBinary{path: path}
	if reason := staticELF(path); reason != "" {
		pb.unusable = reason
		return pb
	}
	f, err := os.Open(path)
	if err != nil {
		pb.unusable = err.Error()
		return pb
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		pb.unusable = err.Error()
		return pb
	}
	pb.tag = "herd-pause:" + hex.EncodeToString(h.Sum(nil))[:16]
	return pb
}

// staticELF returns "" for a statically linked ELF executable and a reason
// otherwise.
func staticELF(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Sprintf("%s is not a readable ELF executable: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Sprintf("%s is dynamically linked (build it with CGO_ENABLED=0)", path)
		}
	}
	return ""
}

// buildScratchImage builds tag FROM scratch holding the file at binPath as
// /<name>, its entrypoint, through the daemon's build API.
func buildScratchImage(ctx context.Context, c *client.Client, tag, binPath, name string, labels map[string]string) error {
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", binPath, err)
	}
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY %s /%s\nENTRYPOINT [\"/%s\"]\n", name, name, name)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {name, 0o755, bin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	resp, err := c.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Labels: labels,
	})
	if err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	defer resp.Body.Close()
	if err := readProgress(resp.Body); err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	return nil
}

// readProgress drains a build or pull progress stream and returns the
// error it reports, if any.
func readProgress(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if msg.ErrorDetail.Message != "" {
			return errors.New(msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}
