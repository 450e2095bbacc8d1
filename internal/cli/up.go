package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/agent"
	"github.com/herd-project/herd/internal/controlplane"
	"github.com/herd-project/herd/internal/driver"
	"github.com/herd-project/herd/internal/driver/docker"
	"github.com/herd-project/herd/internal/driver/exec"
)

// defaultStoreListen is where `herd up` serves its embedded store, so that
// etcdctl can look inside.
const defaultStoreListen = "http://127.0.0.1:7379"

// controlPlaneFlags are the flags of herd up and herd server.
type controlPlaneFlags struct {
	dataDir        string
	listen         string
	storeEndpoints []string
	storeListen    string
	strategy       string
	nodeGrace      time.Duration
	logLevel       string
	unsafeNoFsync  bool
}

func (f *controlPlaneFlags) register(cmd *cobra.Command, defaultDataDir string) {
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", defaultDataDir, "directory for the embedded store's data (and the agent's, for herd up)")
	fl.StringVar(&f.listen, "listen", controlplane.DefaultListen, "address of the HTTP API server (host:port)")
	fl.StringSliceVar(&f.storeEndpoints, "store-endpoints", nil, "use this external store (herd store or etcd client URLs, comma-separated) instead of the embedded one")
	fl.StringVar(&f.storeListen, "store-listen", defaultStoreListen, "client URL of the embedded store, for etcdctl")
	fl.StringVar(&f.strategy, "strategy", "spread", "placement strategy: spread or binpack")
	fl.DurationVar(&f.nodeGrace, "node-grace-period", 5*time.Second, "how long a node may miss heartbeats before it is declared down")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.BoolVar(&f.unsafeNoFsync, "unsafe-no-fsync", false, "do not fsync the embedded store (data may be lost on a crash; for tests)")
	_ = fl.MarkHidden("unsafe-no-fsync")
}

func (f *controlPlaneFlags) config(logger *slog.Logger) (controlplane.Config, error) {
	if f.strategy != "spread" && f.strategy != "binpack" {
		return controlplane.Config{}, fmt.Errorf("--strategy: must be spread or binpack, not %q", f.strategy)
	}
	if f.nodeGrace <= 0 {
		return controlplane.Config{}, fmt.Errorf("--node-grace-period: must be > 0")
	}
	if len(f.storeEndpoints) == 0 && f.dataDir == "" {
		return controlplane.Config{}, fmt.Errorf("--data-dir: required for the embedded store")
	}
	return controlplane.Config{
		DataDir:         f.dataDir,
		Listen:          f.listen,
		StoreEndpoints:  f.storeEndpoints,
		StoreListen:     f.storeListen,
		Strategy:        f.strategy,
		NodeGracePeriod: f.nodeGrace,
		Logger:          logger,
		UnsafeNoFsync:   f.unsafeNoFsync,
	}, nil
}

// defaultDir is ~/.herd/<sub>, or ./herd-<sub>.data without a home.
func defaultDir(sub string) string {
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".herd", sub)
	}
	return "herd-" + sub + ".data"
}

// defaultNodeName is the host name in the shape node names must have.
func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "node"
	}
	h = strings.ToLower(h)
	if api.CheckNodeName(h) != "" {
		return "node"
	}
	return h
}

// signalContext returns a context cancelled by SIGTERM or SIGINT. After the
// first signal, a second one kills the process at once (the default action).
func signalContext(parent context.Context, logger *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, os.Interrupt)
	go func() {
		select {
		case sig := <-sigc:
			logger.Info("shutting down", "signal", sig.String())
		case <-ctx.Done():
		}
		signal.Stop(sigc)
		cancel()
	}()
	return ctx, cancel
}

func newUpCommand() *cobra.Command {
	var f controlPlaneFlags
	var nodeName, agentListen string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a whole herd cluster on this machine: store, API server, scheduler, controllers and an agent",
		Long: `Run a whole herd cluster in one process on this machine: the embedded
store, the API server, the scheduler, the controllers and an agent that runs
tasks with the exec driver (and the docker driver when a Docker daemon
answers).

State lives in --data-dir, so stopping and starting herd up keeps jobs.
SIGINT (Ctrl-C) or SIGTERM stops the tasks it runs and shuts down cleanly.`,
		Example: `  herd up
  herd apply -f examples/web.yaml
  herd get allocs`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := parseLogLevel(f.logLevel)
			if err != nil {
				return usageErrorf("%w", err)
			}
			if p := api.CheckNodeName(nodeName); p != "" {
				return usageErrorf("--name: %s", p)
			}
			logger := newLogger(cmd.ErrOrStderr(), level, "text")
			cfg, err := f.config(logger)
			if err != nil {
				return usageErrorf("%w", err)
			}
			cmd.SilenceUsage = true
			return runUp(cmd.Context(), cmd.OutOrStdout(), logger, cfg, nodeName, agentListen)
		},
	}
	f.register(cmd, defaultDir("up"))
	cmd.Flags().StringVar(&nodeName, "name", defaultNodeName(), "name of this machine's node")
	cmd.Flags().StringVar(&agentListen, "agent-listen", "127.0.0.1:0", "address of the agent's HTTP server (serves logs)")
	cmd.Flags().SortFlags = false
	return cmd
}

func runUp(ctx context.Context, out io.Writer, logger *slog.Logger, cfg controlplane.Config, nodeName, agentListen string) error {
	ctx, cancel := signalContext(ctx, logger)
	defer cancel()
	cp, err := controlplane.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeControlPlane(cp, logger)

	a, err := newNodeAgent(agentOptions{
		server:     cp.URL(),
		name:       nodeName,
		dataDir:    filepath.Join(cfg.DataDir, "agent"),
		listen:     agentListen,
		stopOnExit: true,
		logger:     logger,
	})
	if err != nil {
		return err
	}
	agentErr := make(chan error, 1)
	go func() { agentErr <- a.Run(ctx) }()

	store := "external " + strings.Join(cfg.StoreEndpoints, ",")
	if urls := cp.StoreURLs(); urls != nil {
		store = strings.Join(urls, ",") + " (etcd v3 API; try etcdctl)"
	}
	fmt.Fprintf(out, `herd is up.
  API server: %s
  store:      %s
  node:       %s
  data:       %s

Next: herd apply -f examples/web.yaml, then herd get allocs
`, cp.URL(), store, nodeName, cfg.DataDir)

	select {
	case <-ctx.Done():
		// The agent stops its tasks while the API server still listens, so
		// their final states are recorded.
		return <-agentErr
	case err := <-agentErr:
		return fmt.Errorf("agent: %w", err)
	case err := <-cp.Err():
		cancel()
		<-agentErr
		return err
	}
}

func closeControlPlane(cp *controlplane.ControlPlane, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cp.Close(ctx); err != nil {
		logger.Warn("control plane shutdown", "err", err)
	}
	logger.Info("herd stopped")
}

func newServerCommand() *cobra.Command {
	var f controlPlaneFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane: API server, scheduler and controllers",
		Long: `Run herd's control plane: the HTTP API server, the scheduler and the
controllers. By default it keeps its state in an embedded store in
--data-dir; with --store-endpoints it uses an external herd store or etcd
instead. Agents on other machines connect with herd agent --server.`,
		Example: `  herd server --listen 0.0.0.0:7080
  herd server --store-endpoints http://10.0.0.1:2379,http://10.0.0.2:2379`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := parseLogLevel(f.logLevel)
			if err != nil {
				return usageErrorf("%w", err)
			}
			logger := newLogger(cmd.ErrOrStderr(), level, "text")
			cfg, err := f.config(logger)
			if err != nil {
				return usageErrorf("%w", err)
			}
			cmd.SilenceUsage = true
			ctx, cancel := signalContext(cmd.Context(), logger)
			defer cancel()
			cp, err := controlplane.Start(ctx, cfg)
			if err != nil {
				return err
			}
			defer closeControlPlane(cp, logger)
			logger.Info("herd server ready", "api", cp.URL(), "store", cp.StoreURLs())
			select {
			case <-ctx.Done():
				return nil
			case err := <-cp.Err():
				return err
			}
		},
	}
	f.register(cmd, defaultDir("server"))
	cmd.Flags().SortFlags = false
	return cmd
}

type agentOptions struct {
	server, name, dataDir, listen, advertise string
	labels                                   map[string]string
	stopOnExit                               bool
	logger                                   *slog.Logger
}

// newNodeAgent builds an agent with the exec and docker drivers. The agent
// advertises only the drivers that are healthy at start, so a machine
// without a Docker daemon simply offers exec.
func newNodeAgent(o agentOptions) (*agent.Agent, error) {
	client, err := api.NewClient(o.server)
	if err != nil {
		return nil, err
	}
	execDriver, err := exec.New(exec.Config{
		StateDir: filepath.Join(o.dataDir, "exec"),
		Logger:   o.logger.With("driver", "exec"),
	})
	if err != nil {
		return nil, fmt.Errorf("exec driver: %w", err)
	}
	dockerDriver, err := docker.New(docker.Config{
		StateDir: filepath.Join(o.dataDir, "docker"),
		Logger:   o.logger.With("driver", "docker"),
	})
	if err != nil {
		return nil, fmt.Errorf("docker driver: %w", err)
	}
	return agent.New(agent.Config{
		Client:              client,
		Name:                o.name,
		DataDir:             o.dataDir,
		Listen:              o.listen,
		AdvertiseAddr:       o.advertise,
		Labels:              o.labels,
		Drivers:             []driver.Driver{execDriver, dockerDriver},
		StopTasksOnShutdown: o.stopOnExit,
		Logger:              o.logger,
	})
}

func newAgentCommand() *cobra.Command {
	var o agentOptions
	var logLevel string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node agent that runs the tasks the scheduler places on this machine",
		Long: `Run herd's node agent: it registers this machine as a node with the API
server, heartbeats, and runs the tasks of the allocations placed on it with
the exec driver, and with the docker driver when a Docker daemon answers.

Tasks keep running when the agent stops; the next agent started with the
same --data-dir recovers them.`,
		Example: `  herd agent --server http://10.0.0.1:7080 --name worker-1
  herd agent --name edge-7 --listen 0.0.0.0:7081 --advertise 192.168.1.7:7081 --label zone=shop`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := parseLogLevel(logLevel)
			if err != nil {
				return usageErrorf("%w", err)
			}
			if p := api.CheckNodeName(o.name); p != "" {
				return usageErrorf("--name: %s", p)
			}
			if o.server == "" {
				o.server = defaultServer()
			}
			if o.dataDir == "" {
				o.dataDir = defaultDir("agent-" + o.name)
			}
			o.logger = newLogger(cmd.ErrOrStderr(), level, "text")
			cmd.SilenceUsage = true
			ctx, cancel := signalContext(cmd.Context(), o.logger)
			defer cancel()
			a, err := newNodeAgent(o)
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.server, "server", "", "API server URL (default $HERD_ADDR, else "+api.DefaultAddress+")")
	fl.StringVar(&o.name, "name", defaultNodeName(), "node name")
	fl.StringVar(&o.dataDir, "data-dir", "", "directory for task state, working dirs and logs (default ~/.herd/agent-<name>)")
	fl.StringVar(&o.listen, "listen", "127.0.0.1:7081", "address of the agent's HTTP server (serves logs to the API server)")
	fl.StringVar(&o.advertise, "advertise", "", "address the API server uses to reach this agent (default: the listen address)")
	fl.StringToStringVar(&o.labels, "label", nil, "node label key=value (repeatable)")
	fl.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.SortFlags = false
	return cmd
}
