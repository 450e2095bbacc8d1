package cli

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/api"
)

// newLogsCommand builds herd logs.
func newLogsCommand() *cobra.Command {
	var conn *serverFlags
	var follow, stderr bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs ALLOC [TASK]",
		Short: "Print the output of a task of an allocation",
		Long: `Print what a task of an allocation wrote to its standard output (or, with
--stderr, its standard error). TASK may be left out when the allocation's
group has one task. The API server fetches the output from the node that
runs the allocation.

Allocation names hold brackets, which shells may read as patterns: quote
them.`,
		Example: `  # The output of the first replica of job web
  herd logs 'web.web[0]'

  # Follow the last 20 lines of its standard error
  herd logs 'web.web[0]' web --stderr --tail 20 -f`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			alloc := strings.TrimPrefix(args[0], "alloc/")
			if _, _, _, err := api.ParseAllocName(alloc); err != nil {
				return usageErrorf("%v", err)
			}
			if tail < 0 {
				return usageErrorf("--tail %d: must be >= 0", tail)
			}
			if err := conn.checkNamespace(); err != nil {
				return err
			}
			c, err := conn.client()
			if err != nil {
				return err
			}
			cmd.SilenceUsage = true
			opts := api.LogOptions{Follow: follow, Tail: tail}
			if len(args) == 2 {
				opts.Task = args[1]
			}
			if stderr {
				opts.Stream = "stderr"
			}
			ctx := cmd.Context()
			if follow {
				// Ctrl-C ends a followed stream; it is not a failure.
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
			}
			if err := copyLogs(ctx, c, cmd.OutOrStdout(), conn.namespace, alloc, opts); err != nil {
				return serverError(c, err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "keep printing output as the task writes it")
	f.BoolVar(&stderr, "stderr", false, "print standard error rather than standard output")
	f.IntVar(&tail, "tail", 0, "start this many lines before the end (0: from the start)")
	conn = addServerFlags(cmd)
	conn.addNamespaceFlag(cmd, "namespace of the allocation")
	return cmd
}

// copyLogs copies a task's output to w until the stream ends or ctx does.
func copyLogs(ctx context.Context, c *api.Client, w io.Writer, ns, alloc string, opts api.LogOptions) error {
	rc, err := c.Logs(ctx, ns, alloc, opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
