package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/jonboulle/clockwork"
	"github.com/spf13/cobra"

	"github.com/herd-project/herd/api"
)

// getOptions are the flags of herd get.
type getOptions struct {
	conn          *serverFlags
	allNamespaces bool
	output        string
	job           string
	node          string
}

// newGetCommand builds herd get.
func newGetCommand() *cobra.Command { return getCommand(clockwork.NewRealClock()) }

// getCommand builds herd get with a clock for the ages it prints.
func getCommand(clock clockwork.Clock) *cobra.Command {
	o := &getOptions{}
	cmd := &cobra.Command{
		Use:   "get (jobs|allocs|nodes|events) [NAME]",
		Short: "List jobs, allocations, nodes or events",
		Long: `List objects of one kind as a table, or show one of them by name.

Kinds: job/jobs, alloc/allocs/allocation/allocations, node/nodes,
event/events. An object may also be named as KIND/NAME, as in job/web.
Jobs, allocations and events belong to a namespace (-n, or -A for all);
nodes do not, and their events are listed with those of any namespace.
For events, NAME selects the events about objects of that name.`,
		Example: `  # The jobs of the default namespace
  herd get jobs

  # The allocations of job web, with their UIDs and placement messages
  herd get allocs --job web -o wide

  # What runs on node n1, in every namespace
  herd get allocs --node n1 -A

  # One job as YAML
  herd get job web -o yaml

  # Recent events of every namespace
  herd get events -A`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := kindAndName(args, false, kindJobs, kindAllocs, kindNodes, kindEvents)
			if err != nil {
				return err
			}
			if err := o.check(kind, name); err != nil {
				return err
			}
			c, err := o.conn.client()
			if err != nil {
				return err
			}
			cmd.SilenceUsage = true
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			out := getOutput{stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), format: o.output,
				table: tableOptions{now: clock.Now(), wide: o.output == outputWide, namespaces: o.allNamespaces}}
			if err := o.run(ctx, c, kind, name, out); err != nil {
				return serverError(c, err)
			}
			return nil
		},
	}
	o.conn = addServerFlags(cmd)
	o.conn.addNamespaceFlag(cmd, "namespace of the objects")
	f := cmd.Flags()
	f.BoolVarP(&o.allNamespaces, flagAllNamespaces, "A", false, "list the objects of every namespace")
	f.StringVarP(&o.output, "output", "o", "", "output format: wide, json or yaml (default: a table)")
	f.StringVar(&o.job, "job", "", "only the allocations or events of this job")
	f.StringVar(&o.node, "node", "", "only the allocations placed on this node")
	return cmd
}

// check rejects flag combinations that mean nothing.
func (o *getOptions) check(kind resourceKind, name string) error {
	if err := checkOutputFormat(o.output); err != nil {
		return err
	}
	if err := o.conn.checkNamespace(); err != nil {
		return err
	}
	if o.job != "" && kind != kindAllocs && kind != kindEvents {
		return usageErrorf("--job applies to allocs and events, not %s", kind)
	}
	if o.node != "" && kind != kindAllocs {
		return usageErrorf("--node applies to allocs, not %s", kind)
	}
	if name != "" && kind != kindEvents {
		if o.job != "" || o.node != "" {
			return usageErrorf("--job and --node select from a list; they do not go with a NAME")
		}
		if o.allNamespaces && kind != kindNodes {
			return usageErrorf("a %s is named within one namespace: use -n rather than -A", kind.singular())
		}
	}
	return nil
}

// namespace is the namespace to list, "" for all of them.
func (o *getOptions) namespace() string {
	if o.allNamespaces {
		return ""
	}
	return o.conn.namespace
}

// getOutput is where and how herd get prints.
type getOutput struct {
	stdout, stderr io.Writer
	format         string
	table          tableOptions
}

func (o *getOptions) run(ctx context.Context, c *api.Client, kind resourceKind, name string, out getOutput) error {
	ns := o.namespace()
	switch kind {
	case kindJobs:
		if name != "" {
			j, err := c.GetJob(ctx, ns, name)
			if err != nil {
				return notFound(err, kind, ns, name)
			}
			return out.print(j, jobsTable([]api.Job{*j}, out.table), 1, ns)
		}
		list, err := c.ListJobs(ctx, ns)
		if err != nil {
			return err
		}
		return out.print(list, jobsTable(list.Items, out.table), len(list.Items), ns)
	case kindAllocs:
		if name != "" {
			a, err := c.GetAlloc(ctx, ns, name)
			if err != nil {
				return notFound(err, kind, ns, name)
			}
			return out.print(a, allocsTable([]api.Allocation{*a}, out.table), 1, ns)
		}
		list, err := c.ListAllocs(ctx, api.AllocFilter{Namespace: ns, Job: o.job, Node: o.node})
		if err != nil {
			return err
		}
		return out.print(list, allocsTable(list.Items, out.table), len(list.Items), ns)
	case kindNodes:
		out.table.namespaces = false
		if name != "" {
			n, err := c.GetNode(ctx, name)
			if err != nil {
				return notFound(err, kind, "", name)
			}
			return out.print(n, nodesTable([]api.Node{*n}, out.table), 1, "")
		}
		list, err := c.ListNodes(ctx)
		if err != nil {
			return err
		}
		return out.print(list, nodesTable(list.Items, out.table), len(list.Items), "")
	default:
		list, err := c.ListEvents(ctx, api.EventFilter{Namespace: ns, Name: name})
		if err != nil {
			return err
		}
		if ns != "" && o.job == "" {
			// Node events belong to no namespace; show them with any.
			nodeEvents, err := c.ListEvents(ctx, api.EventFilter{Kind: api.KindNode, Name: name})
			if err != nil {
				return err
			}
			list.Items = mergeEvents(list.Items, nodeEvents.Items)
		}
		if o.job != "" {
			list.Items = eventsOfJob(list.Items, o.job)
		}
		return out.print(list, eventsTable(list.Items, out.table, true), len(list.Items), ns)
	}
}

// print writes obj in the requested format, or the table; an empty table
// is a note on stderr rather than a bare header.
func (out getOutput) print(obj any, t *table, count int, ns string) error {
	if out.format == outputJSON || out.format == outputYAML {
		return printObject(out.stdout, obj, out.format)
	}
	if count == 0 {
		where := "."
		if ns != "" {
			where = " in namespace " + ns + "."
		}
		_, err := fmt.Fprintln(out.stderr, "No resources found"+where)
		return err
	}
	return t.write(out.stdout, "")
}

// eventsOfJob keeps the events about a job and about its allocations.
func eventsOfJob(events []api.Event, job string) []api.Event {
	var out []api.Event
	for _, e := range events {
		if eventAboutJob(e, job) {
			out = append(out, e)
		}
	}
	return out
}

func eventAboutJob(e api.Event, job string) bool {
	switch e.Kind {
	case api.KindJob:
		return e.Name == job
	case api.KindAllocation:
		j, _, _, err := api.ParseAllocName(e.Name)
		return err == nil && j == job
	}
	return false
}
