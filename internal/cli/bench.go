package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/internal/benchkv"
)

// newBenchCommand returns `herd bench`, the load generators.
func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the performance of herd store, etcd and the orchestrator",
		Long: `Load generators that measure throughput and latency.

"herd bench kv" drives any server that speaks the etcd v3 API, so the same
workload can be run against herd store and against etcd and compared.
"herd bench jobs" measures a running control plane and its agents end to
end: time to start replicas, failover, and store requests per workload.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newBenchKVCommand(), newBenchJobsCommand())
	return cmd
}

// benchKVFlags are shared by `herd bench kv put` and `herd bench kv range`.
type benchKVFlags struct {
	opts    benchkv.Options
	jsonOut bool
}

func newBenchKVCommand() *cobra.Command {
	f := &benchKVFlags{}
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Benchmark the etcd v3 KV API (put and range)",
		Long: `Benchmark the etcd v3 KV API of herd store or etcd, like etcd's own
"benchmark put" and "benchmark range".

--conns gRPC connections are opened and --clients workers share them
round-robin (worker i uses connection i mod conns). Each worker sends one
request at a time until --total requests have been sent. Every request is
timed; the report gives total time, throughput, latency min/avg/max and the
exact p50, p90, p99 and p99.9 of successful requests, and the number of
failed ones. Each connection makes one untimed read first, so connection
set-up is not measured.`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringSliceVar(&f.opts.Endpoints, "endpoints", []string{"127.0.0.1:2379"}, "server client endpoints (host:port or http://host:port), comma-separated")
	pf.IntVar(&f.opts.Clients, "clients", 1, "concurrent workers, each with one request in flight")
	pf.IntVar(&f.opts.Conns, "conns", 1, "gRPC connections, shared round-robin by the workers")
	pf.IntVar(&f.opts.Rate, "rate", 0, "maximum requests per second over all workers (0 is no limit)")
	pf.DurationVar(&f.opts.RequestTimeout, "request-timeout", 30*time.Second, "timeout of each request, which then counts as failed (0 is none)")
	pf.DurationVar(&f.opts.DialTimeout, "dial-timeout", benchkv.DefaultDialTimeout, "timeout to connect and make the warm-up read")
	pf.BoolVar(&f.jsonOut, "json", false, "print the result as JSON")
	cmd.AddCommand(newBenchKVPutCommand(f), newBenchKVRangeCommand(f))
	return cmd
}

func newBenchKVPutCommand(f *benchKVFlags) *cobra.Command {
	o := benchkv.PutOptions{}
	var total int
	cmd := &cobra.Command{
		Use:   "put",
		Short: "Benchmark put requests",
		Long: `Send --total put requests and report throughput and latency.

Key number n is n as a signed varint (Go's binary.PutVarint, as in etcd's
benchmark tool) padded with zero bytes to --key-size. Key numbers are drawn
uniformly at random from [0, --key-space-size), or with --sequential-keys
taken in order 0, 1, 2, ... wrapping at --key-space-size. Every put writes the
same random value of --val-size bytes.

The defaults are those of etcd's benchmark tool, including a key space of
one key: every put then overwrites the same key.`,
		Example: `  # One client, one connection, 10,000 puts of new 8-byte keys with 256-byte values
  herd bench kv put --total 10000 --key-size 8 --val-size 256 \
      --sequential-keys --key-space-size 10000

  # 64 clients over 8 connections, 100,000 puts to random keys of a 100,000 key space
  herd bench kv put --endpoints 127.0.0.1:2379 --clients 64 --conns 8 \
      --total 100000 --val-size 256 --key-space-size 100000

  # The same, as JSON
  herd bench kv put --clients 64 --conns 8 --total 100000 --val-size 256 \
      --key-space-size 100000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Options = f.opts
			o.Total = total
			cmd.SilenceUsage = true
			res, err := benchkv.Put(cmd.Context(), o)
			return f.report(cmd, res, err)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&total, "total", 10000, "number of put requests")
	fl.IntVar(&o.KeySize, "key-size", 8, "key size in bytes")
	fl.IntVar(&o.ValSize, "val-size", 8, "value size in bytes")
	fl.Int64Var(&o.KeySpaceSize, "key-space-size", 1, "number of distinct keys")
	fl.BoolVar(&o.SequentialKeys, "sequential-keys", false, "write keys in order instead of at random")
	return cmd
}

func newBenchKVRangeCommand(f *benchKVFlags) *cobra.Command {
	o := benchkv.RangeOptions{}
	var (
		total       int
		consistency string
	)
	cmd := &cobra.Command{
		Use:   "range [KEY [END]]",
		Short: "Benchmark range (get) requests",
		Long: `Send --total range requests and report throughput and latency.

Without KEY, the benchmark first puts the key "` + benchkv.DefaultRangeKey + `" with a
random value of --val-size bytes (untimed, and checked by reading it back);
every request then reads that single key. This matches etcd's documented
read benchmark, which reads one key written beforehand.

With KEY, nothing is written: each request reads KEY, or the range
[KEY, END) if END is given, as it is in the store.

--consistency l makes linearizable reads (the server confirms it is up to
date before answering); s makes serializable reads, served from the member's
local state.`,
		Example: `  # 64 clients over 8 connections, 100,000 serializable reads of one key
  herd bench kv range --clients 64 --conns 8 --total 100000 --consistency s

  # The same with linearizable reads, as JSON
  herd bench kv range --clients 64 --conns 8 --total 100000 --consistency l --json

  # Read an existing range of keys without writing anything
  herd bench kv range /registry/ /registry0 --total 1000`,
		Args: cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Options = f.opts
			o.Total = total
			o.Consistency = benchkv.Consistency(consistency)
			if o.Consistency != benchkv.Linearizable && o.Consistency != benchkv.Serializable {
				return fmt.Errorf("--consistency must be l (linearizable) or s (serializable), got %q", consistency)
			}
			switch len(args) {
			case 0:
				o.Key, o.WriteKey = benchkv.DefaultRangeKey, true
			case 2:
				o.Key, o.End = args[0], args[1]
			default:
				o.Key = args[0]
			}
			if o.Key == "" {
				return errors.New("KEY must not be empty")
			}
			cmd.SilenceUsage = true
			res, err := benchkv.Range(cmd.Context(), o)
			return f.report(cmd, res, err)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&total, "total", 10000, "number of range requests")
	fl.StringVar(&consistency, "consistency", "l", "l (linearizable) or s (serializable)")
	fl.IntVar(&o.ValSize, "val-size", 8, "size in bytes of the value written before the run when no KEY is given")
	return cmd
}

// report prints res, if any, and fails if the run failed or no request
// succeeded, so scripts can rely on the exit code.
func (f *benchKVFlags) report(cmd *cobra.Command, res *benchkv.Result, runErr error) error {
	if res != nil {
		out := cmd.OutOrStdout()
		var err error
		if f.jsonOut {
			err = res.WriteJSON(out)
		} else {
			err = res.WriteText(out)
		}
		if err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if res.Succeeded == 0 {
		return fmt.Errorf("all %d requests failed", res.Requests)
	}
	return nil
}
