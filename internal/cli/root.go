// Package cli implements herd's command line: one cobra command per file.
//
// Main maps the outcome of a command to an exit code: 0 on success, 1 when a
// command failed while running, 2 when it was called wrongly (unknown command
// or flag, bad flag value).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes returned by Main.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// Main runs the herd command line with args and returns the exit code.
func Main(args []string) int {
	return execute(context.Background(), newRootCommand(startEtcdServer), args, os.Stdout, os.Stderr)
}

// newRootCommand builds the herd command tree. startStore starts the store
// server for `herd store`; tests pass a fake.
func newRootCommand(startStore startFunc) *cobra.Command {
	root := &cobra.Command{
		Use:   "herd",
		Short: "herd is a container orchestrator shipped as one binary",
		Long: `herd is a container orchestrator shipped as one binary, built for the edge:
the aim is that every node can run the whole stack and keep working when it
is cut off from the others.

Run a whole cluster on this machine:

  herd up                          store, API server, scheduler, controllers
                                   and an agent, in one process
  herd apply -f examples/web.yaml  submit a job
  herd get allocs                  see its allocations run

Or run the parts on separate machines:

  herd server   the control plane: HTTP API server, scheduler, controllers,
                on an embedded store or an external one (herd store or etcd)
  herd agent    a node agent that runs tasks (exec driver; docker when a
                daemon answers)
  herd store    the cluster's datastore; it speaks the etcd v3 gRPC API, so
                etcdctl and etcd's Go client work against it unchanged
  herd bench    load generators for the store and the orchestrator

Commands that talk to the API server find it with --server or $HERD_ADDR
(default http://127.0.0.1:7080).`,
		Version: Version,
		// Main prints errors itself so that it can choose the exit code.
		SilenceErrors: true,
		SilenceUsage:  true,
		CompletionOptions: cobra.CompletionOptions{
			HiddenDefaultCmd: true,
		},
	}
	root.SetVersionTemplate("herd {{.Version}}\n")
	root.AddCommand(
		newUpCommand(), newServerCommand(), newAgentCommand(),
		newApplyCommand(), newGetCommand(), newDescribeCommand(), newScaleCommand(),
		newLogsCommand(), newDeleteCommand(), newDrainCommand(),
		newStoreCommand(startStore), newBenchCommand(), newVersionCommand(),
	)
	classifyErrors(root)
	return root
}

// classifyErrors gives the errors of every command in the tree an exit code.
// Commands may say it themselves with usageErrorf or runtimeError; otherwise
// the cobra idiom decides: a command sets SilenceUsage once it has checked
// its input, so errors before that are usage errors and errors after it are
// runtime errors.
func classifyErrors(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error {
			err := run(c, args)
			var ee *exitError
			if err == nil || errors.As(err, &ee) {
				return err
			}
			if c.SilenceUsage {
				return runtimeError(err)
			}
			return &exitError{code: ExitUsage, err: err}
		}
	}
	for _, sub := range cmd.Commands() {
		classifyErrors(sub)
	}
}

// execute runs root with args and turns its error into an exit code.
func execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	code := exitCode(err)
	if code == ExitUsage && cmd != nil {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// exitError carries an exit code through cobra, which only passes errors.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports a command called wrongly, such as a bad flag value.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// runtimeError reports a command that was called rightly but failed.
func runtimeError(err error) error {
	return &exitError{code: ExitError, err: err}
}

// exitCode is the exit code for an error returned by a command. Errors that
// do not carry one come from cobra itself (unknown command or flag, bad flag
// syntax, wrong arguments), so they are usage errors.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitUsage
}
