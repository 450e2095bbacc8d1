package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/benchjobs"
	"github.com/herd-project/herd/internal/benchkv"
)

// newBenchJobsCommand returns `herd bench jobs`, the end-to-end
// orchestrator measurements.
func newBenchJobsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "Measure the orchestrator end to end through its API",
		Long: `Measure a running herd control plane and its agents through the HTTP API,
as a user would see them. Jobs run /bin/sh sleeping, so the figures are the
orchestrator's, not the task's.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newBenchStartupCommand(), newBenchTraceCommand(), newBenchFailoverCommand())
	return cmd
}

type startupResult struct {
	Replicas int     `json:"replicas"`
	Repeats  int     `json:"repeats"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// startupJob returns the jobs `bench jobs startup` applies for the
// --driver, --image, --command and --args flags, or a usage error.
func startupJob(driverName, image, command string, args []string, argsSet bool) (benchjobs.JobFunc, error) {
	switch driverName {
	case "exec":
		if image != "" || command != "" || argsSet {
			return nil, usageErrorf("--image, --command and --args need --driver docker")
		}
		return benchjobs.SleepJob, nil
	case "docker":
		if image == "" {
			return nil, usageErrorf("--image is required with --driver docker")
		}
		return benchjobs.DockerSleepJob(image, command, args), nil
	default:
		return nil, usageErrorf("--driver must be exec or docker, not %q", driverName)
	}
}

func newBenchStartupCommand() *cobra.Command {
	var replicas []int
	var repeats int
	var jsonOut bool
	var driverName, image, command string
	var args []string
	cmd := &cobra.Command{
		Use:   "startup",
		Short: "Time apply until all replicas run, for several replica counts",
		Long: `For each --replicas count, apply a service job of that many sleeping
replicas, time until every one runs (as reported by its agent), delete the
job, wait until its allocations are gone, and repeat --repeats times. Prints
p50, p99 and max per count.

With --driver docker the replicas are containers of --image, which must
already be on the node (the pull policy is "never") and whose command, or
--command and --args, must keep running until SIGTERM.`,
		Example: `  herd bench jobs startup --replicas 1,10,100 --repeats 10
  herd bench jobs startup --driver docker --image herd-bench-sleep:latest --replicas 1,10,50`,
		Args: cobra.NoArgs,
	}
	sf := addServerFlags(cmd)
	cmd.Flags().IntSliceVar(&replicas, "replicas", []int{1, 10, 100}, "replica counts, comma-separated")
	cmd.Flags().IntVar(&repeats, "repeats", 5, "runs per replica count")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the results as JSON")
	cmd.Flags().StringVar(&driverName, "driver", "exec", "task driver of the replicas: exec or docker")
	cmd.Flags().StringVar(&image, "image", "", "image of the replicas (--driver docker; must be on the node already)")
	cmd.Flags().StringVar(&command, "command", "", "command of the replicas instead of the image's (--driver docker)")
	cmd.Flags().StringSliceVar(&args, "args", nil, "arguments of --command, comma-separated (--driver docker)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if repeats < 1 || slices.ContainsFunc(replicas, func(n int) bool { return n < 1 || n > api.MaxCount }) {
			return usageErrorf("--repeats and every --replicas value must be >= 1")
		}
		job, err := startupJob(driverName, image, command, args, cmd.Flags().Changed("args"))
		if err != nil {
			return err
		}
		c, err := api.NewClient(sf.server)
		if err != nil {
			return usageErrorf("--server: %w", err)
		}
		cmd.SilenceUsage = true
		var results []startupResult
		for _, n := range replicas {
			samples, err := benchjobs.StartupOf(cmd.Context(), c, n, repeats, job)
			if err != nil {
				return fmt.Errorf("%d replicas: %w", n, err)
			}
			l := benchkv.NewLatencies(samples)
			results = append(results, startupResult{n, repeats, msOf(l.Percentile(50)), msOf(l.Percentile(99)), msOf(l.Max())})
		}
		if jsonOut {
			return writeJSON(cmd.OutOrStdout(), results)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%-9s %-8s %10s %10s %10s\n", "REPLICAS", "REPEATS", "P50", "P99", "MAX")
		for _, r := range results {
			fmt.Fprintf(cmd.OutOrStdout(), "%-9d %-8d %8.0fms %8.0fms %8.0fms\n", r.Replicas, r.Repeats, r.P50Ms, r.P99Ms, r.MaxMs)
		}
		return nil
	}
	return cmd
}

type traceStep struct {
	Name string  `json:"name"`
	Ms   float64 `json:"ms"`
}

type traceResult struct {
	Steps    []traceStep      `json:"steps"`
	Requests map[string]int64 `json:"store_requests"`
	Total    int64            `json:"total"`
	Seconds  float64          `json:"seconds"`
}

func newBenchTraceCommand() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Count the store requests of seed 004's Table 1 trace",
		Long: `Run the trace of seed 004's Table 1 (create a service of 3 replicas,
scale it to 10, scale it to 5, delete it; each step waits until the cluster
has done it) and print the store requests the control plane sent meanwhile,
by kind, read from its /metrics. The counts include whatever else the
cluster did meanwhile, such as agent heartbeats, so run it on a quiet
cluster. Kubernetes needed 2,951 store requests for this trace.`,
		Example: `  herd bench jobs trace --server http://127.0.0.1:7080`,
		Args:    cobra.NoArgs,
	}
	sf := addServerFlags(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the result as JSON")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := api.NewClient(sf.server)
		if err != nil {
			return usageErrorf("--server: %w", err)
		}
		cmd.SilenceUsage = true
		metrics := strings.TrimRight(c.Address(), "/") + "/metrics"
		ctx := cmd.Context()
		before, err := benchjobs.StoreRequests(ctx, metrics)
		if err != nil {
			return err
		}
		start := time.Now()
		job := fmt.Sprintf("trace-%d", start.UnixNano()%1e6)
		steps := benchjobs.Table1Trace(job)
		took, err := benchjobs.RunTrace(ctx, c, job, steps)
		if err != nil {
			return err
		}
		elapsed := time.Since(start)
		after, err := benchjobs.StoreRequests(ctx, metrics)
		if err != nil {
			return err
		}
		res := traceResult{Requests: benchjobs.Diff(before, after), Seconds: elapsed.Seconds()}
		for i, s := range steps {
			res.Steps = append(res.Steps, traceStep{s.Name, msOf(took[i])})
		}
		for _, n := range res.Requests {
			res.Total += n
		}
		if jsonOut {
			return writeJSON(cmd.OutOrStdout(), res)
		}
		out := cmd.OutOrStdout()
		for i, s := range steps {
			fmt.Fprintf(out, "%-12s %8.0fms\n", s.Name, msOf(took[i]))
		}
		kinds := make([]string, 0, len(res.Requests))
		for k := range res.Requests {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		fmt.Fprintf(out, "\nstore requests in %.1fs:\n", res.Seconds)
		for _, k := range kinds {
			fmt.Fprintf(out, "  %-14s %6d\n", k, res.Requests[k])
		}
		fmt.Fprintf(out, "  %-14s %6d\n", "total", res.Total)
		return nil
	}
	return cmd
}

func newBenchFailoverCommand() *cobra.Command {
	var replicas, pid int
	var node string
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Time until the allocations of a killed agent run on other nodes",
		Long: `Apply a service job, wait until it runs, kill the agent process --pid
(SIGKILL) of node --node, and time until every replica runs on another
node. The cluster needs at least one other node with room.`,
		Example: `  herd bench jobs failover --replicas 4 --node worker-1 --pid 12345`,
		Args:    cobra.NoArgs,
	}
	sf := addServerFlags(cmd)
	cmd.Flags().IntVar(&replicas, "replicas", 4, "replicas of the job")
	cmd.Flags().IntVar(&pid, "pid", 0, "process id of the agent to kill")
	cmd.Flags().StringVar(&node, "node", "", "node name of that agent")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if pid <= 0 || node == "" || replicas < 1 {
			return usageErrorf("--pid, --node and --replicas >= 1 are required")
		}
		c, err := api.NewClient(sf.server)
		if err != nil {
			return usageErrorf("--server: %w", err)
		}
		cmd.SilenceUsage = true
		took, err := benchjobs.Failover(cmd.Context(), c, replicas, node, func() error {
			return syscall.Kill(pid, syscall.SIGKILL)
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "replacements running %.0fms after the agent was killed\n", msOf(took))
		return nil
	}
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
