// Package main builds herd, the single binary of the herd orchestrator:
// store, control plane, agent, CLI and benchmarks, one subcommand each.
package main

import (
	"os"

	"github.com/herd-project/herd/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
