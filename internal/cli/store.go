package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/herd-project/herd/internal/store/etcdserver"
)

// storeServer is the part of a running store server the command uses.
type storeServer interface {
	ClientURLs() []string
	Close() error
}

// startFunc starts a store server.
type startFunc func(etcdserver.Config) (storeServer, error)

// startEtcdServer is the startFunc of the real server.
func startEtcdServer(cfg etcdserver.Config) (storeServer, error) {
	s, err := etcdserver.Start(cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Flag names, shared by registration, validation messages and tests.
const (
	flagName                = "name"
	flagDataDir             = "data-dir"
	flagListenClientURLs    = "listen-client-urls"
	flagAdvertiseClientURLs = "advertise-client-urls"
	flagMaxRequestBytes     = "max-request-bytes"
	flagMaxTxnOps           = "max-txn-ops"
	flagProgressNotify      = "watch-progress-notify-interval"
	flagProgressNotifyOld   = "experimental-watch-progress-notify-interval"
	flagUnsafeNoFsync       = "unsafe-no-fsync"
	flagLogLevel            = "log-level"
	flagLogFormat           = "log-format"
)

const (
	defaultListenClientURL = "http://127.0.0.1:2379"
	// dataDirSuffix mirrors etcd's "${name}.etcd" default data directory.
	dataDirSuffix = ".herd"
	// maxGRPCMessageBytes is the largest message gRPC can carry.
	maxGRPCMessageBytes uint = math.MaxInt32
)

// storeFlags holds the raw flag values of `herd store`.
type storeFlags struct {
	name                string
	dataDir             string
	listenClientURLs    string
	advertiseClientURLs string
	maxRequestBytes     uint
	maxTxnOps           uint
	progressNotify      time.Duration
	unsafeNoFsync       bool
	logLevel            string
	logFormat           string
}

// register defines the flags on fs with etcd's names and defaults.
func (f *storeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.name, flagName, "default", "Human-readable name for this member.")
	fs.StringVar(&f.dataDir, flagDataDir, "", `Path to the data directory (default "${name}`+dataDirSuffix+`").`)
	fs.StringVar(&f.listenClientURLs, flagListenClientURLs, defaultListenClientURL,
		"Comma-separated http://host:port URLs to serve clients on. Port 0 picks a free port.")
	fs.StringVar(&f.advertiseClientURLs, flagAdvertiseClientURLs, "",
		"Comma-separated client URLs to advertise to clients (default: the listen URLs).")
	fs.UintVar(&f.maxRequestBytes, flagMaxRequestBytes, uint(etcdserver.DefaultMaxRequestBytes),
		"Maximum client request size in bytes the server will accept.")
	fs.UintVar(&f.maxTxnOps, flagMaxTxnOps, etcdserver.DefaultMaxTxnOps,
		"Maximum number of operations permitted in a transaction.")
	fs.DurationVar(&f.progressNotify, flagProgressNotify, etcdserver.DefaultWatchProgressNotifyInterval,
		"Duration of periodic watch progress notifications.")
	fs.DurationVar(&f.progressNotify, flagProgressNotifyOld, etcdserver.DefaultWatchProgressNotifyInterval,
		"Same as --"+flagProgressNotify+" (its name before etcd v3.6).")
	fs.BoolVar(&f.unsafeNoFsync, flagUnsafeNoFsync, false,
		"Disables fsync, unsafe, will cause data loss on a crash. For tests and benchmarks only.")
	fs.StringVar(&f.logLevel, flagLogLevel, "info", "Log level: debug, info, warn or error.")
	fs.StringVar(&f.logFormat, flagLogFormat, "text", "Log format: text or json.")
}

// storeSettings is what the flags resolve to.
type storeSettings struct {
	server    etcdserver.Config
	logLevel  slog.Level
	logFormat string
}

// settings validates the flags parsed from fs and resolves their defaults.
// Its errors name the flag at fault.
func (f *storeFlags) settings(fs *pflag.FlagSet) (storeSettings, error) {
	var s storeSettings
	if strings.TrimSpace(f.name) == "" {
		return s, fmt.Errorf("--%s must not be empty", flagName)
	}
	dataDir := f.dataDir
	if fs.Changed(flagDataDir) && dataDir == "" {
		return s, fmt.Errorf("--%s must not be empty", flagDataDir)
	}
	if dataDir == "" {
		dataDir = f.name + dataDirSuffix
	}
	listen, err := parseClientURLs(flagListenClientURLs, f.listenClientURLs, true)
	if err != nil {
		return s, err
	}
	var advertise []string
	if fs.Changed(flagAdvertiseClientURLs) {
		if advertise, err = parseClientURLs(flagAdvertiseClientURLs, f.advertiseClientURLs, false); err != nil {
			return s, err
		}
	}
	if f.maxRequestBytes == 0 || f.maxRequestBytes > maxGRPCMessageBytes {
		return s, fmt.Errorf("--%s %d: want 1 to %d", flagMaxRequestBytes, f.maxRequestBytes, maxGRPCMessageBytes)
	}
	if f.maxTxnOps == 0 || f.maxTxnOps > math.MaxInt32 {
		return s, fmt.Errorf("--%s %d: want 1 to %d", flagMaxTxnOps, f.maxTxnOps, math.MaxInt32)
	}
	if f.progressNotify <= 0 {
		name := flagProgressNotify
		if fs.Changed(flagProgressNotifyOld) {
			name = flagProgressNotifyOld
		}
		return s, fmt.Errorf("--%s %v: want a positive duration", name, f.progressNotify)
	}
	level, err := parseLogLevel(f.logLevel)
	if err != nil {
		return s, err
	}
	format := strings.ToLower(f.logFormat)
	if format != "text" && format != "json" {
		return s, fmt.Errorf("--%s %q: want text or json", flagLogFormat, f.logFormat)
	}
	s.server = etcdserver.Config{
		Name:                        f.name,
		DataDir:                     dataDir,
		ListenClientURLs:            listen,
		AdvertiseClientURLs:         advertise,
		MaxRequestBytes:             int(f.maxRequestBytes),
		MaxTxnOps:                   int(f.maxTxnOps),
		WatchProgressNotifyInterval: f.progressNotify,
		UnsafeNoFsync:               f.unsafeNoFsync,
	}
	s.logLevel = level
	s.logFormat = format
	return s, nil
}

// parseClientURLs parses a comma-separated list of http://host:port URLs and
// returns them normalised. Listen URLs may leave the host empty (all
// interfaces) and use port 0; advertised URLs must be reachable as given.
func parseClientURLs(flag, value string, listen bool) ([]string, error) {
	var urls []string
	for _, raw := range strings.Split(value, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("--%s %q: %w", flag, raw, err)
		}
		switch {
		case u.Scheme == "https" || u.Scheme == "unixs":
			return nil, fmt.Errorf("--%s %q: TLS is not supported yet, use http://", flag, raw)
		case u.Scheme != "http":
			return nil, fmt.Errorf("--%s %q: want an http://host:port URL", flag, raw)
		case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
			return nil, fmt.Errorf("--%s %q: want http://host:port with no user, path or query", flag, raw)
		}
		host, portStr, err := net.SplitHostPort(u.Host)
		if err != nil {
			return nil, fmt.Errorf("--%s %q: want http://host:port: %w", flag, raw, err)
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("--%s %q: bad port %q", flag, raw, portStr)
		}
		if !listen && (host == "" || port == 0) {
			return nil, fmt.Errorf("--%s %q: an advertised URL needs a host and a non-zero port", flag, raw)
		}
		urls = append(urls, "http://"+net.JoinHostPort(host, portStr))
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("--%s: want at least one URL", flag)
	}
	return urls, nil
}

// parseLogLevel accepts exactly the four level names, in any case.
func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--%s %q: want debug, info, warn or error", flagLogLevel, s)
}

// newLogger builds the structured logger of a command.
func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func newStoreCommand(start startFunc) *cobra.Command {
	var f storeFlags
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Run herd store, a datastore that speaks the etcd v3 API",
		Long: `Run herd store: a single-node datastore that speaks the etcd v3 gRPC API
(KV, Txn, Watch, Lease, Compaction, Maintenance, Cluster), so etcdctl and
etcd's Go client work against it unchanged.

Flags have etcd's names, defaults and meaning. Data lives in --data-dir;
every acknowledged write is fsync'd to disk first. SIGTERM or SIGINT shuts
the server down cleanly.`,
		Example: `  herd store
  herd store --name node1 --listen-client-urls http://0.0.0.0:2379 \
      --advertise-client-urls http://node1.example:2379
  ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:2379 put greeting hello`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.settings(cmd.Flags())
			if err != nil {
				return usageErrorf("%w", err)
			}
			logger := newLogger(cmd.ErrOrStderr(), s.logLevel, s.logFormat)
			if err := runStore(cmd.Context(), logger, s.server, start); err != nil {
				return runtimeError(err)
			}
			return nil
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().SortFlags = false
	return cmd
}

// runStore serves until ctx is done or SIGTERM or SIGINT arrives, then shuts
// the server down.
func runStore(ctx context.Context, logger *slog.Logger, cfg etcdserver.Config, start startFunc) error {
	// Subscribe before starting so that a signal during start-up is not lost.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigc)

	cfg.Logger = logger
	logger.Info("starting herd store", "version", Version, "go", runtime.Version(),
		"name", cfg.Name, "data_dir", cfg.DataDir, "fsync", !cfg.UnsafeNoFsync)
	srv, err := start(cfg)
	if err != nil {
		return fmt.Errorf("start store: %w", err)
	}
	advertise := cfg.AdvertiseClientURLs
	if len(advertise) == 0 {
		advertise = srv.ClientURLs()
	}
	logger.Info("herd store ready", "client_urls", srv.ClientURLs(), "advertise_client_urls", advertise)

	select {
	case sig := <-sigc:
		logger.Info("shutting down", "signal", sig.String())
	case <-ctx.Done():
		logger.Info("shutting down", "reason", context.Cause(ctx).Error())
	}
	// From here on a second signal kills the process at once.
	signal.Stop(sigc)

	if err := srv.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	logger.Info("herd store stopped")
	return nil
}
