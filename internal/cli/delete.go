package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// newDeleteCommand builds herd delete.
func newDeleteCommand() *cobra.Command {
	var conn *serverFlags
	cmd := &cobra.Command{
		Use:   "delete job NAME",
		Short: "Delete a job and stop its allocations",
		Long: `Delete a job. Its allocations are stopped (SIGTERM, then SIGKILL after
the task's kill timeout) and collected once their nodes report them
stopped.`,
		Example: `  herd delete job web
  herd delete job/web -n shop`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := kindAndName(args, true, kindJobs)
			if err != nil {
				return err
			}
			if err := conn.checkNamespace(); err != nil {
				return err
			}
			c, err := conn.client()
			if err != nil {
				return err
			}
			cmd.SilenceUsage = true
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			if err := c.DeleteJob(ctx, conn.namespace, name); err != nil {
				return serverError(c, notFound(err, kind, conn.namespace, name))
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s/%s deleted\n", kind.singular(), name)
			return err
		},
	}
	conn = addServerFlags(cmd)
	conn.addNamespaceFlag(cmd, "namespace of the job")
	return cmd
}
