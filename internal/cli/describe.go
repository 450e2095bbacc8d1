package cli

import (
	"context"
	"io"

	"github.com/jonboulle/clockwork"
	"github.com/spf13/cobra"

	"github.com/herd-project/herd/api"
)

// maxReportEvents bounds the events a report shows: the most recent ones.
const maxReportEvents = 20

// newDescribeCommand builds herd describe.
func newDescribeCommand() *cobra.Command { return describeCommand(clockwork.NewRealClock()) }

// describeCommand builds herd describe with a clock for the ages it prints.
func describeCommand(clock clockwork.Clock) *cobra.Command {
	var conn *serverFlags
	cmd := &cobra.Command{
		Use:   "describe (job|alloc|node) NAME",
		Short: "Show a job, allocation or node in detail, with its recent events",
		Long: `Show one object in detail.

A job: its spec (type, priority, groups with their tasks, resources,
constraints and restart policy), the status of each group, its allocations
and recent events.

An allocation: its job, group and node, what the control plane wants of it
and what its node reports, why it could not be placed (if so), the state of
each task (exit code, restarts, start and finish) and its recent events.

A node: its status and availability, address, attributes and labels, its
capacity and how much of it allocations use, its drivers, its last
heartbeat and the allocations placed on it.`,
		Example: `  # Why is my job not running?
  herd describe job web

  # Why did this allocation fail, or where could it not be placed?
  herd describe alloc 'web.web[0]'

  # What runs on node n1 and how full is it?
  herd describe node/n1`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := kindAndName(args, true, kindJobs, kindAllocs, kindNodes)
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
			if err := describe(ctx, c, cmd.OutOrStdout(), clock, kind, conn.namespace, name); err != nil {
				return serverError(c, err)
			}
			return nil
		},
	}
	conn = addServerFlags(cmd)
	conn.addNamespaceFlag(cmd, "namespace of the job or allocation")
	return cmd
}

// describe gathers what the report of one object shows and writes it.
func describe(ctx context.Context, c *api.Client, w io.Writer, clock clockwork.Clock, kind resourceKind, ns, name string) error {
	switch kind {
	case kindJobs:
		j, err := c.GetJob(ctx, ns, name)
		if err != nil {
			return notFound(err, kind, ns, name)
		}
		allocs, err := c.ListAllocs(ctx, api.AllocFilter{Namespace: ns, Job: name})
		if err != nil {
			return err
		}
		events, err := c.ListEvents(ctx, api.EventFilter{Namespace: ns})
		if err != nil {
			return err
		}
		return writeJobReport(w, clock.Now(), jobReport{job: j, allocs: allocs.Items,
			events: lastEvents(eventsOfJob(events.Items, name))})
	case kindAllocs:
		a, err := c.GetAlloc(ctx, ns, name)
		if err != nil {
			return notFound(err, kind, ns, name)
		}
		events, err := c.ListEvents(ctx, api.EventFilter{Namespace: ns, Kind: api.KindAllocation, Name: name})
		if err != nil {
			return err
		}
		return writeAllocReport(w, clock.Now(), allocReport{alloc: a, events: lastEvents(events.Items)})
	default:
		n, err := c.GetNode(ctx, name)
		if err != nil {
			return notFound(err, kind, "", name)
		}
		allocs, err := c.ListAllocs(ctx, api.AllocFilter{Node: name})
		if err != nil {
			return err
		}
		events, err := c.ListEvents(ctx, api.EventFilter{Kind: api.KindNode, Name: name})
		if err != nil {
			return err
		}
		return writeNodeReport(w, clock.Now(), nodeReport{node: n, allocs: allocs.Items, events: lastEvents(events.Items)})
	}
}

// lastEvents keeps the most recent events of a list that is oldest first.
func lastEvents(events []api.Event) []api.Event {
	if len(events) > maxReportEvents {
		return events[len(events)-maxReportEvents:]
	}
	return events
}
