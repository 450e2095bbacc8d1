// Package main builds herd, the single binary of the herd orchestrator:
// store, control plane, agent, CLI and benchmarks, one subcommand each.
package main

import (
	"os"

	"github.com/herd-project/herd/internal/cli"
	"github.com/herd-project/herd/internal/driver/docker"
	"github.com/herd-project/herd/internal/driver/exec"
)

func main() {
	// The exec driver runs each task under a shim that is this binary
	// started again; in a shim this call never returns.
	exec.RunShimIfRequested()
	// The docker driver's per-allocation network namespace is held by this
	// binary running as the pause process of a container.
	docker.RunPauseIfRequested()
	os.Exit(cli.Main(os.Args[1:]))
}
