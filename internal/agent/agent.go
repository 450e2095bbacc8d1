// Package agent is herd's node agent. It registers its node with the API
// server and heartbeats, watches the allocations placed on the node, admits
// and runs their tasks through task drivers, restarts them per their group's
// restart policy, reports their status, recovers the tasks of an earlier
// agent process after a restart, and serves task logs over HTTP.
//
// The agent talks to the API server only through Server (ClientServer adapts
// *api.Client) and runs tasks only through driver.Driver. See README.md.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-project/herd/api"
	"github.com/herd-project/herd/internal/driver"
)

// Defaults of Config.
const (
	DefaultListen            = "127.0.0.1:0"
	DefaultHeartbeatInterval = time.Second
	// DefaultFingerprintInterval is how often drivers are fingerprinted
	// again, so that a docker daemon that stops or starts answering changes
	// what the node advertises.
	DefaultFingerprintInterval = 30 * time.Second
)

const (
	// gcInterval is how often directories of departed allocations are
	// collected.
	gcInterval = time.Minute
	// flushTimeout bounds the last status reports at shutdown.
	flushTimeout = 5 * time.Second
	// httpShutdownTimeout bounds the HTTP server's graceful shutdown.
	httpShutdownTimeout = 5 * time.Second
)

// Config configures an Agent.
type Config struct {
	// Client reaches the API server. Server, if set, is used instead (tests
	// use an in-memory fake); one of them is required.
	Client *api.Client
	Server Server
	// Name is the node's name (a DNS-like name, dots allowed).
	Name string
	// DataDir holds the allocations' task directories and logs:
	// <DataDir>/allocs/<allocUID>/<task>/logs.
	DataDir string
	// Listen is the address of the agent's HTTP server (logs, health).
	// Default DefaultListen.
	Listen string
	// AdvertiseAddr is the address registered for the node, which the API
	// server uses to fetch logs. Default: the listener's address, with an
	// unspecified host replaced by an address of this machine.
	AdvertiseAddr string
	// Drivers run tasks; only those whose fingerprint is healthy are
	// advertised and used.
	Drivers []driver.Driver
	// Labels are the node's labels, for constraints.
	Labels map[string]string
	// Reserved is kept from allocations: allocatable = capacity - reserved.
	// Reserved ports are never given to allocations.
	Reserved api.Resources
	// HeartbeatInterval, default DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// FingerprintInterval is how often the drivers are fingerprinted again
	// after the start; a change of a driver's health or message registers
	// the node again. Default DefaultFingerprintInterval.
	FingerprintInterval time.Duration
	// StopTasksOnShutdown stops every task when Run ends (herd up). Without
	// it the tasks keep running for the next agent to recover (herd agent).
	StopTasksOnShutdown bool
	// Clock drives every delay and backoff. Default the real clock.
	Clock clockwork.Clock
	// Logger, default slog.Default().
	Logger *slog.Logger
	// Registerer, if set, gets the agent's metrics.
	Registerer prometheus.Registerer
}

// Agent is a node agent. Create it with New and run it with Run.
type Agent struct {
	cfg     Config
	srv     Server
	clock   clockwork.Clock
	log     *slog.Logger
	metrics *metrics
	agentID string

	ln        net.Listener
	advertise string
	ran       atomic.Bool

	// Set up by Run before any loop starts. The fingerprint loop changes
	// the drivers' part of machine under nodeMu and hands the healthy
	// drivers to Run's loop through driversCh.
	nodeMu      sync.Mutex
	machine     machine
	driversCh   chan map[string]driver.Driver
	allocatable api.Resources
	host        *host
	view        *desiredView
	reporter    *reporter
	wakeCh      chan struct{}
	async       sync.WaitGroup

	// runners is owned by Run's loop: the incarnations the agent holds.
	runners map[string]*allocRunner
}

// New checks cfg and opens the agent's HTTP listener; Run serves it and
// closes it.
func New(cfg Config) (*Agent, error) {
	if cfg.Server == nil {
		if cfg.Client == nil {
			return nil, errors.New("agent: Client is required")
		}
		cfg.Server = ClientServer(cfg.Client)
	}
	if problem := api.CheckNodeName(cfg.Name); problem != "" {
		return nil, fmt.Errorf("agent: node name %q: %s", cfg.Name, problem)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("agent: DataDir is required")
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("agent: DataDir: %w", err)
	}
	cfg.DataDir = dataDir
	if cfg.HeartbeatInterval < 0 {
		return nil, fmt.Errorf("agent: HeartbeatInterval must be positive, got %s", cfg.HeartbeatInterval)
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.FingerprintInterval < 0 {
		return nil, fmt.Errorf("agent: FingerprintInterval must be positive, got %s", cfg.FingerprintInterval)
	}
	if cfg.FingerprintInterval == 0 {
		cfg.FingerprintInterval = DefaultFingerprintInterval
	}
	if cfg.Reserved.CPU < 0 {
		return nil, fmt.Errorf("agent: Reserved.CPU must be >= 0, got %d", cfg.Reserved.CPU)
	}
	if cfg.Reserved.Memory < 0 {
		return nil, fmt.Errorf("agent: Reserved.Memory must be >= 0, got %d", cfg.Reserved.Memory)
	}
	for i, p := range cfg.Reserved.Ports {
		if p.Port < 1 || p.Port > 65535 {
			return nil, fmt.Errorf("agent: Reserved.Ports[%d]: port must be between 1 and 65535, got %d", i, p.Port)
		}
	}
	names := map[string]bool{}
	for i, d := range cfg.Drivers {
		if d == nil {
			return nil, fmt.Errorf("agent: Drivers[%d] is nil", i)
		}
		if names[d.Name()] {
			return nil, fmt.Errorf("agent: Drivers[%d]: duplicate driver %q", i, d.Name())
		}
		names[d.Name()] = true
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("agent: listen on %s: %w", cfg.Listen, err)
	}
	a := &Agent{
		cfg:       cfg,
		srv:       cfg.Server,
		clock:     cfg.Clock,
		log:       cfg.Logger.With("component", "agent", "node", cfg.Name),
		metrics:   m,
		agentID:   uuid.NewString(),
		ln:        ln,
		advertise: cfg.AdvertiseAddr,
		wakeCh:    make(chan struct{}, 1),
		driversCh: make(chan map[string]driver.Driver, 1),
		view:      newDesiredView(),
		runners:   map[string]*allocRunner{},
	}
	if a.advertise == "" {
		a.advertise = advertiseAddress(ln.Addr())
	}
	return a, nil
}

// Addr is the address the agent's HTTP server listens on.
func (a *Agent) Addr() string { return a.ln.Addr().String() }

// AdvertiseAddr is the address registered for the node.
func (a *Agent) AdvertiseAddr() string { return a.advertise }

// Run runs the agent until ctx ends, then cleans up: with
// StopTasksOnShutdown it stops every task and reports them; otherwise the
// tasks keep running for the next agent. It returns nil after a shutdown
// through ctx.
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called more than once")
	}
	httpDone := a.serveHTTP()
	defer httpDone()

	a.machine = probeMachine(ctx, a.cfg.Name, a.cfg.Drivers)
	a.allocatable = allocatable(a.machine.capacity, a.cfg.Reserved)
	a.logStartup()

	a.reporter = newReporter(a.srv, a.cfg.Name, a.clock, a.log)
	a.host = &host{
		node:     a.cfg.Name,
		dataDir:  a.cfg.DataDir,
		clock:    a.clock,
		log:      a.log,
		drivers:  maps.Clone(a.machine.drivers),
		reporter: a.reporter,
		metrics:  a.metrics,
		wake:     a.wake,
		goAsync:  a.async.Go,
	}

	if err := a.register(ctx); err != nil {
		return nil // ctx ended while waiting for the server; nothing runs yet
	}
	var loops sync.WaitGroup
	loops.Go(func() { a.heartbeatLoop(ctx) })
	loops.Go(func() { a.fingerprintLoop(ctx) })
	defer loops.Wait()

	rv, err := a.list(ctx)
	if err != nil {
		return nil
	}
	listed, _ := a.view.snapshot()
	recovered := a.recoverTasks(ctx, listed)

	// Tasks live on taskCtx: it ends only after the shutdown decided what
	// to do with them.
	taskCtx, abandonTasks := context.WithCancel(context.Background())
	defer abandonTasks()
	for _, al := range listed {
		if tasks, ok := recovered[al.UID]; ok {
			r := newAllocRunner(a.host, al, tasks)
			a.runners[al.UID] = r
			r.start(taskCtx)
		}
	}

	loops.Go(func() { a.watchLoop(ctx, rv) })
	loops.Go(func() { a.reporter.run(ctx) })
	a.loop(ctx, taskCtx)

	loops.Wait()
	a.shutdown(abandonTasks)
	return nil
}

// loop reconciles whenever the view or a runner changes, until ctx ends.
func (a *Agent) loop(ctx, taskCtx context.Context) {
	gc := a.clock.NewTicker(gcInterval)
	defer gc.Stop()
	a.reconcile(taskCtx)
	desired, _ := a.view.snapshot()
	a.sweep(desired)
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.view.changed:
		case <-a.wakeCh:
		case healthy := <-a.driversCh:
			// Tasks already running keep their driver; new ones and
			// admission follow the latest fingerprint.
			a.host.drivers = healthy
		case <-gc.Chan():
			desired, _ := a.view.snapshot()
			a.sweep(desired)
		}
		a.reconcile(taskCtx)
	}
}

// reconcile runs one pass: plan from the view and the runners, then act.
func (a *Agent) reconcile(taskCtx context.Context) {
	desired, synced := a.view.snapshot()
	if !synced {
		return
	}
	views := make(map[string]runnerView, len(a.runners))
	for uid, r := range a.runners {
		views[uid] = r.view()
	}
	ports := make([]int, 0, len(a.cfg.Reserved.Ports))
	for _, p := range a.cfg.Reserved.Ports {
		ports = append(ports, p.Port)
	}
	drivers := map[string]bool{}
	for name := range a.host.drivers {
		drivers[name] = true
	}
	p := reconcile(reconcileInput{
		Node:          a.cfg.Name,
		Desired:       desired,
		Runners:       views,
		Allocatable:   a.allocatable,
		ReservedPorts: ports,
		Drivers:       drivers,
	})
	for _, s := range p.Stop {
		r := a.runners[s.UID]
		a.log.Info("stopping allocation", "alloc", allocKey(r.alloc), "uid", s.UID, "reason", s.Reason)
		r.stop(s.Reason, s.Report)
	}
	for _, uid := range p.Forget {
		r := a.runners[uid]
		delete(a.runners, uid)
		a.async.Go(r.forget)
	}
	for _, rej := range p.Reject {
		al := rej.Alloc
		a.log.Warn("rejecting allocation", "alloc", allocKey(al), "uid", al.UID, "reason", rej.Message)
		ev := a.allocEvent(al, api.EventWarning, EventRejected, rej.Message)
		a.runners[al.UID] = newFinishedRunner(a.host, al, api.ClientFailed, ev)
	}
	for _, al := range p.Finish {
		a.log.Info("allocation is wanted stopped and runs nothing here; reporting it complete", "alloc", allocKey(al), "uid", al.UID)
		ev := a.allocEvent(al, api.EventNormal, EventKilled, "stopped: no task was running on this node")
		a.runners[al.UID] = newFinishedRunner(a.host, al, api.ClientComplete, ev)
	}
	for _, al := range p.Start {
		a.log.Info("starting allocation", "alloc", allocKey(al), "uid", al.UID, "tasks", len(al.Spec.GroupSpec.Tasks))
		r := newAllocRunner(a.host, al, nil)
		a.runners[al.UID] = r
		r.start(taskCtx)
	}
}

// shutdown stops or abandons the tasks, sends the last reports and waits
// for every goroutine the agent started.
func (a *Agent) shutdown(abandonTasks context.CancelFunc) {
	if a.cfg.StopTasksOnShutdown {
		a.log.Info("stopping all tasks before exiting")
		for _, r := range a.runners {
			r.stopForShutdown()
		}
		for _, r := range a.runners {
			<-r.done
		}
	} else {
		a.log.Info("leaving tasks running for the next agent to recover")
	}
	abandonTasks()
	for _, r := range a.runners {
		<-r.done
	}
	a.async.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	a.reporter.flush(ctx)
	a.async.Wait()
	a.log.Info("agent stopped")
}

// serveHTTP serves the agent's HTTP API on its listener. The returned
// function shuts the server down, ending log follows.
func (a *Agent) serveHTTP() func() {
	baseCtx, cancelBase := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("agent HTTP server failed", "err", err)
		}
	}()
	return func() {
		cancelBase()
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	}
}

// logStartup says what the node offers and what is and is not enforced.
func (a *Agent) logStartup() {
	a.log.Info("agent starting",
		"agentID", a.agentID,
		"address", a.advertise,
		"dataDir", a.cfg.DataDir,
		"cpu", fmt.Sprintf("%dm", a.machine.capacity.CPU),
		"memory", formatBytes(a.machine.capacity.Memory),
		"allocatableCPU", fmt.Sprintf("%dm", a.allocatable.CPU),
		"allocatableMemory", formatBytes(a.allocatable.Memory),
		"drivers", a.machine.driverNames())
	for _, note := range a.machine.notes {
		a.log.Info(note)
	}
	a.log.Info("admission: allocations are rejected when their requests would exceed allocatable cpu or memory or take a used port; limits inside a task are enforced only where its driver says so")
	if a.cfg.StopTasksOnShutdown {
		a.log.Info("tasks will be stopped when the agent exits")
	} else {
		a.log.Info("tasks keep running when the agent exits; the next agent recovers them")
	}
}

func (a *Agent) allocEvent(al *api.Allocation, typ api.EventType, reason, message string) api.Event {
	return api.Event{
		Time:      a.clock.Now(),
		Type:      typ,
		Kind:      api.KindAllocation,
		Namespace: al.Namespace,
		Name:      al.Name,
		Reason:    reason,
		Message:   message,
		Source:    "agent/" + a.cfg.Name,
	}
}

func (a *Agent) wake() {
	select {
	case a.wakeCh <- struct{}{}:
	default:
	}
}

func (a *Agent) allocsDir() string { return filepath.Join(a.cfg.DataDir, "allocs") }
