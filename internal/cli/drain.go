package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/api"
)

// newDrainCommand builds herd drain.
func newDrainCommand() *cobra.Command {
	var conn *serverFlags
	var undo, pause bool
	cmd := &cobra.Command{
		Use:   "drain NODE",
		Short: "Move allocations off a node, or stop new placements on it",
		Long: `Set a node's availability:

  herd drain NODE          drain: no new allocations, and the running ones
                           are replaced on other nodes
  herd drain NODE --pause  pause: no new allocations; running ones stay
  herd drain NODE --undo   active: the node takes allocations again`,
		Example: `  # Empty node n1 before maintenance, then take it back
  herd drain n1
  herd drain n1 --undo`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := strings.TrimPrefix(args[0], "node/")
			if p := api.CheckNodeName(name); p != "" {
				return usageErrorf("node name %q: %s", name, p)
			}
			availability, done := api.Drain, "draining"
			switch {
			case undo:
				availability, done = api.Active, "active"
			case pause:
				availability, done = api.Pause, "paused"
			}
			c, err := conn.client()
			if err != nil {
				return err
			}
			cmd.SilenceUsage = true
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			if _, err := c.SetAvailability(ctx, name, availability); err != nil {
				return serverError(c, notFound(err, kindNodes, "", name))
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "node/%s %s\n", name, done)
			return err
		},
	}
	cmd.Flags().BoolVar(&undo, "undo", false, "make the node active again")
	cmd.Flags().BoolVar(&pause, "pause", false, "stop new placements but keep running allocations")
	cmd.MarkFlagsMutuallyExclusive("undo", "pause")
	conn = addServerFlags(cmd)
	return cmd
}
