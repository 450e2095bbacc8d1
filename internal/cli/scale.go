package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/api"
)

// newScaleCommand builds herd scale.
func newScaleCommand() *cobra.Command {
	var conn *serverFlags
	cmd := &cobra.Command{
		Use:   "scale JOB[/GROUP] COUNT",
		Short: "Set how many allocations a group of a job runs",
		Long: `Set the count of a group of a job. A job with one group needs no group
name. Scaling down stops the allocations with the highest indexes.`,
		Example: `  # Run five replicas of the example web service
  herd scale web 5

  # Scale group cache of job shop to zero
  herd scale shop/cache 0`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, group, _ := strings.Cut(args[0], "/")
			if p := api.CheckName(job); p != "" {
				return usageErrorf("job name %q: %s", job, p)
			}
			count, err := strconv.Atoi(args[1])
			if err != nil || count < 0 || count > api.MaxCount {
				return usageErrorf("count %q: must be a whole number between 0 and %d", args[1], api.MaxCount)
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
			msg, err := scaleJob(ctx, c, conn.namespace, job, group, count)
			if err != nil {
				return serverError(c, err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), msg)
			return err
		},
	}
	conn = addServerFlags(cmd)
	conn.addNamespaceFlag(cmd, "namespace of the job")
	return cmd
}

// scaleJob sets the count of a group and says what changed.
func scaleJob(ctx context.Context, c *api.Client, ns, name, group string, count int) (string, error) {
	j, err := c.GetJob(ctx, ns, name)
	if err != nil {
		return "", notFound(err, kindJobs, ns, name)
	}
	g, err := findGroup(j, group)
	if err != nil {
		return "", err
	}
	if g.Count == count {
		return fmt.Sprintf("job/%s unchanged (group %s: %d)", name, g.Name, count), nil
	}
	if _, err := c.ScaleJob(ctx, ns, name, api.ScaleRequest{Group: g.Name, Count: count}); err != nil {
		return "", err
	}
	return fmt.Sprintf("job/%s scaled (group %s: %d -> %d)", name, g.Name, g.Count, count), nil
}

// findGroup returns the named group of j, or its only group when name is
// empty.
func findGroup(j *api.Job, name string) (*api.Group, error) {
	names := make([]string, len(j.Spec.Groups))
	for i := range j.Spec.Groups {
		g := &j.Spec.Groups[i]
		if g.Name == name || name == "" && len(j.Spec.Groups) == 1 {
			return g, nil
		}
		names[i] = g.Name
	}
	if name == "" {
		return nil, fmt.Errorf("job %s has %d groups (%s): name one, as in %s/%s",
			j.Name, len(names), strings.Join(names, ", "), j.Name, firstOr(names, "GROUP"))
	}
	return nil, fmt.Errorf("job %s has no group %q (its groups: %s)", j.Name, name, strings.Join(names, ", "))
}

func firstOr(list []string, fallback string) string {
	if len(list) == 0 {
		return fallback
	}
	return list[0]
}
