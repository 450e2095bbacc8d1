// Package controlplane runs herd's control plane in one process: the store
// (embedded herd store, or external endpoints), the registry that caches it,
// the HTTP API server, the scheduler and the controllers. `herd server` runs
// it alone; `herd up` runs it with an agent.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/herd-project/herd/internal/apiserver"
	"github.com/herd-project/herd/internal/controller"
	"github.com/herd-project/herd/internal/registry"
	"github.com/herd-project/herd/internal/scheduler"
	"github.com/herd-project/herd/internal/store/etcdserver"
	"github.com/herd-project/herd/internal/storeclient"
)

// DefaultListen is the API server's default address.
const DefaultListen = "127.0.0.1:7080"

// Config configures a control plane.
type Config struct {
	// DataDir holds the embedded store's data (DataDir/store).
	DataDir string
	// Listen is the API server's address (host:port; port 0 picks one).
	Listen string
	// StoreEndpoints, if set, name an external store (herd store or etcd)
	// instead of the embedded one.
	StoreEndpoints []string
	// StoreListen is the client URL of the embedded store, so that etcdctl
	// can look at it (default http://127.0.0.1:0, a free port).
	StoreListen string
	// Strategy is the scheduler's placement strategy (spread or binpack).
	Strategy string
	// NodeGracePeriod is how long a node may miss heartbeats before it is
	// declared down (default 5s).
	NodeGracePeriod time.Duration
	Clock           clockwork.Clock
	Logger          *slog.Logger
	// UnsafeNoFsync skips fsync in the embedded store (tests only).
	UnsafeNoFsync bool
}

// ControlPlane is a running control plane.
type ControlPlane struct {
	cfg      Config
	store    *etcdserver.Server // nil with external endpoints
	client   *clientv3.Client
	counter  *storeclient.Counter
	registry *registry.Registry
	listener net.Listener
	http     *http.Server
	metrics  *prometheus.Registry

	cancel   context.CancelFunc // stops scheduler, controllers and watch streams
	wg       sync.WaitGroup
	stopOnce sync.Once
	errc     chan error
}

// Start starts every part and returns once the API server listens.
func Start(ctx context.Context, cfg Config) (cp *ControlPlane, err error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cp = &ControlPlane{cfg: cfg, errc: make(chan error, 4)}
	defer func() {
		if err != nil {
			cp.closeParts()
		}
	}()

	cp.metrics = prometheus.NewRegistry()
	cp.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cp.counter, err = storeclient.NewCounter(cp.metrics); err != nil {
		return nil, err
	}

	endpoints := cfg.StoreEndpoints
	if len(endpoints) == 0 {
		if cfg.DataDir == "" {
			return nil, errors.New("controlplane: a data dir is needed for the embedded store")
		}
		listen := cfg.StoreListen
		if listen == "" {
			listen = "http://127.0.0.1:0"
		}
		cp.store, err = etcdserver.Start(etcdserver.Config{
			Name:             "herd",
			DataDir:          filepath.Join(cfg.DataDir, "store"),
			ListenClientURLs: []string{listen},
			Logger:           cfg.Logger.With("component", "store"),
			UnsafeNoFsync:    cfg.UnsafeNoFsync,
		})
		if err != nil {
			return nil, fmt.Errorf("starting the embedded store: %w", err)
		}
		endpoints = cp.store.ClientURLs()
	}
	if cp.client, err = storeclient.New(ctx, storeclient.Config{Endpoints: endpoints, Counter: cp.counter}); err != nil {
		return nil, err
	}
	if cp.registry, err = registry.Open(ctx, cp.client, registry.Options{
		Logger: cfg.Logger.With("component", "registry"),
		Clock:  cfg.Clock,
	}); err != nil {
		return nil, fmt.Errorf("opening the registry: %w", err)
	}

	api, err := apiserver.New(apiserver.Config{
		Registry: cp.registry,
		Logger:   cfg.Logger.With("component", "apiserver"),
		Clock:    cfg.Clock,
		Metrics:  cp.metrics,
	})
	if err != nil {
		return nil, err
	}
	if cp.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("API server: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	cp.cancel = cancel
	cp.http = &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Watch streams and followed logs end when the control plane stops.
		BaseContext: func(net.Listener) context.Context { return runCtx },
	}
	cp.goRun("API server", func() error {
		if err := cp.http.Serve(cp.listener); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	sched := scheduler.New(scheduler.Config{
		Registry: cp.registry,
		Clock:    cfg.Clock,
		Logger:   cfg.Logger.With("component", "scheduler"),
		Strategy: cfg.Strategy,
		Metrics:  cp.metrics,
	})
	cp.goRun("scheduler", func() error { return sched.Run(runCtx) })
	cp.goRun("controllers", func() error {
		return controller.Run(runCtx, controller.Config{
			Registry:        cp.registry,
			Clock:           cfg.Clock,
			Logger:          cfg.Logger.With("component", "controller"),
			NodeGracePeriod: cfg.NodeGracePeriod,
			Metrics:         cp.metrics,
		})
	})
	return cp, nil
}

// goRun runs a part; a part that fails makes Err report it.
func (cp *ControlPlane) goRun(name string, run func() error) {
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		if err := run(); err != nil && !errors.Is(err, context.Canceled) {
			cp.errc <- fmt.Errorf("%s: %w", name, err)
		}
	}()
}

// Err receives the error of a part that stopped on its own.
func (cp *ControlPlane) Err() <-chan error { return cp.errc }

// Addr is the API server's address (host:port).
func (cp *ControlPlane) Addr() string { return cp.listener.Addr().String() }

// URL is the API server's base URL.
func (cp *ControlPlane) URL() string { return "http://" + cp.Addr() }

// StoreURLs are the client URLs of the embedded store (nil when external).
func (cp *ControlPlane) StoreURLs() []string {
	if cp.store == nil {
		return nil
	}
	return cp.store.ClientURLs()
}

// Registry is the control plane's registry (for tests and embedding).
func (cp *ControlPlane) Registry() *registry.Registry { return cp.registry }

// StoreRequests returns the store requests sent so far, by kind.
func (cp *ControlPlane) StoreRequests() map[string]int64 { return cp.counter.Counts() }

// Close stops the API server (letting requests in flight finish until ctx
// ends), the scheduler and controllers, and the store.
func (cp *ControlPlane) Close(ctx context.Context) error {
	var err error
	cp.stopOnce.Do(func() {
		if cp.cancel != nil {
			cp.cancel()
		}
		if cp.http != nil {
			if e := cp.http.Shutdown(ctx); e != nil {
				cp.http.Close()
			}
		}
		cp.wg.Wait()
		err = cp.closeParts()
	})
	return err
}

func (cp *ControlPlane) closeParts() error {
	var errs []error
	if cp.listener != nil && cp.http == nil {
		cp.listener.Close()
	}
	if cp.registry != nil {
		errs = append(errs, cp.registry.Close())
	}
	if cp.client != nil {
		errs = append(errs, cp.client.Close())
	}
	if cp.store != nil {
		errs = append(errs, cp.store.Close())
	}
	return errors.Join(errs...)
}
