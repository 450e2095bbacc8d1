package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/herd-project/herd/internal/driver"
	"github.com/herd-project/herd/internal/logstore"
	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"
)

// Name is the driver's name in task specs.
const Name = "docker"

// Config configures the docker driver.
type Config struct {
	// Host is the daemon's address ("unix:///var/run/docker.sock").
	// Default: DOCKER_HOST, else the platform's default socket.
	Host string
	// StateDir holds the log positions of tasks (required).
	StateDir string
	// PauseBinary is put into the pause image and run with HERD_PAUSE=1;
	// it must be statically linked and call RunPauseIfRequested first
	// thing. Default os.Executable().
	PauseBinary string
	// Log sets the rotation of task output; zero values take logstore's
	// defaults.
	Log logstore.WriterOptions
	// Clock paces saving log positions. Default the real clock.
	Clock clockwork.Clock
	// Logger reports background problems. Default slog.Default().
	Logger *slog.Logger
}

// Driver is the docker task driver. It is safe for concurrent use.
type Driver struct {
	cfg    Config
	client *client.Client
	pause  pauseBinary
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup

	mu    sync.Mutex
	tasks map[driver.TaskID]*task
	// allocMu orders creating and removing pause containers and the pause
	// image.
	allocMu sync.Mutex
}

var _ driver.Driver = (*Driver)(nil)

type task struct {
	id          driver.TaskID
	containerID string
	logDir      string
	startedAt   time.Time

	exit *driver.Exit
}

func (t *task) handle() *driver.Handle {
	return &driver.Handle{ID: t.id, Driver: Name, StartedAt: t.startedAt, LogDir: t.logDir}
}

// New checks cfg and creates the daemon client; it does not contact the
// daemon (Fingerprint does).
func New(cfg Config) (*Driver, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("docker: StateDir is required")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("docker: create StateDir: %w", err)
	}
	if cfg.PauseBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("docker: find own executable for PauseBinary: %w", err)
		}
		cfg.PauseBinary = exe
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker: client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Driver{
		cfg: cfg, client: c, pause: inspectPauseBinary(cfg.PauseBinary),
		ctx: ctx, cancel: cancel, tasks: map[driver.TaskID]*task{},
	}, nil
}

// Close stops following logs and exits; containers keep running and a new
// driver finds them with Recover.
func (d *Driver) Close() error {
	d.cancel()
	d.bg.Wait()
	return d.client.Close()
}

// Name returns "docker".
func (d *Driver) Name() string { return Name }

// Fingerprint reports the driver healthy when the daemon answers.
func (d *Driver) Fingerprint(ctx context.Context) driver.Fingerprint {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := d.client.Ping(ctx); err != nil {
		return driver.Fingerprint{Message: "docker daemon unreachable: " + err.Error()}
	}
	fp := driver.Fingerprint{Healthy: true, Attributes: map[string]string{
		"driver.docker.api": d.client.ClientVersion(),
	}}
	if v, err := d.client.ServerVersion(ctx); err == nil {
		fp.Attributes["driver.docker.version"] = v.Version
	}
	if d.pause.unusable != "" {
		fp.Message = "no shared network per allocation, each task gets its own: pause binary " + d.pause.unusable
	}
	return fp
}

func (d *Driver) cursorPath(id driver.TaskID) string {
	return filepath.Join(d.cfg.StateDir, id.AllocUID, id.Task+".json")
}

// Start creates and starts the task's container and returns once it runs.
// An earlier, exited container of the same task is removed first.
func (d *Driver) Start(ctx context.Context, req driver.StartRequest) (*driver.Handle, error) {
	id := req.ID
	if err := checkTaskID(id); err != nil {
		return nil, err
	}
	tc := req.Task.Config
	if tc.Image == "" {
		return nil, errors.New("docker: task.config.image is required")
	}
	if req.LogDir == "" {
		return nil, errors.New("docker: the log directory (LogDir) is required")
	}
	logDir, err := filepath.Abs(req.LogDir)
	if err != nil {
		return nil, fmt.Errorf("docker: log directory: %w", err)
	}
	if old, err := d.find(id); err == nil {
		if !old.exit.Exited() {
			return nil, fmt.Errorf("docker: task %s is already running", id)
		}
		if err := d.Destroy(ctx, id); err != nil {
			return nil, fmt.Errorf("docker: remove earlier run of task %s: %w", id, err)
		}
	} else if !errors.Is(err, driver.ErrNotFound) {
		return nil, err
	}
	if err := d.ensureImage(ctx, tc.Image, tc.PullPolicy); err != nil {
		return nil, fmt.Errorf("docker: start task %s: %w", id, err)
	}
	networkMode := tc.NetworkMode
	if networkMode == "" || networkMode == "bridge" {
		networkMode = "bridge"
		if d.pause.unusable == "" {
			pauseID, err := d.ensurePause(ctx, req)
			if err != nil {
				return nil, fmt.Errorf("docker: start task %s: %w", id, err)
			}
			networkMode = "container:" + pauseID
		}
	}
	spec, err := buildTaskSpec(req, logDir, networkMode)
	if err != nil {
		return nil, fmt.Errorf("docker: start task %s: %w", id, err)
	}
	os.Remove(d.cursorPath(id)) // positions of an earlier run
	created, err := d.client.ContainerCreate(ctx, spec.config, spec.host, nil, nil, containerName(id))
	if err != nil {
		d.removePauseIfUnused(context.WithoutCancel(ctx), id.AllocUID)
		return nil, fmt.Errorf("docker: create container for task %s: %w", id, err)
	}
	if err := d.client.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		cleanup := context.WithoutCancel(ctx)
		d.client.ContainerRemove(cleanup, created.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		d.removePauseIfUnused(cleanup, id.AllocUID)
		return nil, fmt.Errorf("docker: start container for task %s: %w", id, err)
	}
	t, err := d.find(id)
	if err != nil {
		return nil, fmt.Errorf("docker: start task %s: %w", id, err)
	}
	return t.handle(), nil
}

// ensureImage makes the image present according to the pull policy.
func (d *Driver) ensureImage(ctx context.Context, ref, policy string) error {
	if policy != "always" {
		_, err := d.client.ImageInspect(ctx, ref)
		if err == nil {
			return nil
		}
		if !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("inspect image %s: %w", ref, err)
		}
		if policy == "never" {
			return fmt.Errorf("image %s not present and could not be pulled: pull policy is \"never\"", ref)
		}
	}
	rc, err := d.client.ImagePull(ctx, ref, image.PullOptions{})
	if err == nil {
		err = readProgress(rc)
		rc.Close()
	}
	if err != nil {
		if policy == "always" {
			if _, ierr := d.client.ImageInspect(ctx, ref); ierr == nil {
				return fmt.Errorf("pull image %s (pull policy \"always\"): %w", ref, err)
			}
		}
		return fmt.Errorf("image %s not present and could not be pulled: %w", ref, err)
	}
	return nil
}

// find returns the task from memory or from the daemon, watching it for
// its exit.
func (d *Driver) find(id driver.TaskID) (*task, error) {
	if err := checkTaskID(id); err != nil {
		return nil, err
	}
	d.mu.Lock()
	t := d.tasks[id]
	d.mu.Unlock()
	if t != nil {
		return t, nil
	}
	info, err := d.client.ContainerInspect(d.ctx, containerName(id))
	if cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("docker: task %s: %w", id, driver.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("docker: task %s: %w", id, err)
	}
	if info.Config == nil || info.Config.Labels[labelAllocUID] != id.AllocUID || info.Config.Labels[labelTask] != id.Task {
		return nil, fmt.Errorf("docker: container %s is not herd's task %s: %w", containerName(id), id, driver.ErrNotFound)
	}
	t = &task{id: id, containerID: info.ID, logDir: info.Config.Labels[labelLogDir], exit: driver.NewExit()}
	if info.State != nil {
		t.startedAt, _ = time.Parse(time.RFC3339Nano, info.State.StartedAt)
	}
	d.mu.Lock()
	if existing := d.tasks[id]; existing != nil {
		d.mu.Unlock()
		return existing, nil
	}
	d.tasks[id] = t
	d.mu.Unlock()
	d.watch(t)
	return t, nil
}

// watch follows the task's logs and records its exit once the container
// stops and its logs are written.
func (d *Driver) watch(t *task) {
	logsDone := make(chan struct{})
	d.bg.Go(func() {
		defer close(logsDone)
		if t.logDir == "" {
			return
		}
		f := &follower{d: d, containerID: t.containerID, logDir: t.logDir, cursorPath: d.cursorPath(t.id)}
		if err := f.run(d.ctx); err != nil && d.ctx.Err() == nil {
			d.cfg.Logger.Warn("docker: following logs failed", "task", t.id.String(), "err", err)
		}
	})
	d.bg.Go(func() {
		waitCh, errCh := d.client.ContainerWait(d.ctx, t.containerID, container.WaitConditionNotRunning)
		select {
		case <-waitCh:
		case err := <-errCh:
			if d.ctx.Err() != nil {
				return
			}
			if !cerrdefs.IsNotFound(err) {
				d.finish(t, driver.ExitResult{ExitCode: -1, FinishedAt: d.cfg.Clock.Now(), Err: fmt.Errorf("task lost: wait for container: %w", err)})
				return
			}
		}
		res := d.exitResult(t)
		select {
		case <-logsDone:
		case <-d.cfg.Clock.After(5 * time.Second):
		case <-d.ctx.Done():
			return
		}
		d.finish(t, res)
	})
}

func (d *Driver) exitResult(t *task) driver.ExitResult {
	info, err := d.client.ContainerInspect(d.ctx, t.containerID)
	if err != nil || info.State == nil {
		return driver.ExitResult{ExitCode: -1, FinishedAt: d.cfg.Clock.Now(), Err: fmt.Errorf("task lost: inspect container: %v", err)}
	}
	st := info.State
	res := driver.ExitResult{ExitCode: st.ExitCode, OOMKilled: st.OOMKilled}
	res.FinishedAt, _ = time.Parse(time.RFC3339Nano, st.FinishedAt)
	if st.ExitCode > 128 && st.ExitCode < 160 {
		// Docker reports a process killed by signal N as 128+N.
		res.Signal = unix.SignalName(unix.Signal(st.ExitCode - 128))
	}
	if st.Error != "" {
		res.Err = errors.New(st.Error)
	}
	return res
}

func (d *Driver) finish(t *task, res driver.ExitResult) {
	t.exit.Record(func() driver.ExitResult { return res })
}

// Wait returns a channel that receives the task's exit once and is then
// closed. If ctx ends (or the driver is closed) first, the channel is
// closed without a value.
func (d *Driver) Wait(ctx context.Context, id driver.TaskID) (<-chan driver.ExitResult, error) {
	t, err := d.find(id)
	if err != nil {
		return nil, err
	}
	return t.exit.Deliver(ctx, d.ctx.Done()), nil
}

// Stop has the daemon send SIGTERM and SIGKILL after timeout (rounded up
// to whole seconds; at once for timeout <= 0) and returns once the exit is
// recorded.
func (d *Driver) Stop(ctx context.Context, id driver.TaskID, timeout time.Duration) error {
	t, err := d.find(id)
	if err != nil {
		return err
	}
	if t.exit.Exited() {
		return nil
	}
	secs := int((max(timeout, 0) + time.Second - 1) / time.Second)
	if err := d.client.ContainerStop(ctx, t.containerID, container.StopOptions{Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: stop task %s: %w", id, err)
	}
	select {
	case <-t.exit.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("docker: stop task %s: %w", id, ctx.Err())
	case <-d.ctx.Done():
		return fmt.Errorf("docker: stop task %s: driver closed", id)
	}
}

// Destroy removes an exited task's container and log position, and the
// allocation's pause container after its last task. Logs stay.
func (d *Driver) Destroy(ctx context.Context, id driver.TaskID) error {
	t, err := d.find(id)
	if err != nil {
		return err
	}
	if !t.exit.Exited() {
		return fmt.Errorf("docker: destroy task %s: it is still running; stop it first", id)
	}
	err = d.client.ContainerRemove(ctx, t.containerID, container.RemoveOptions{RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) && !removalInProgress(err) {
		return fmt.Errorf("docker: destroy task %s: %w", id, err)
	}
	os.Remove(d.cursorPath(id))
	os.Remove(filepath.Dir(d.cursorPath(id))) // fails while other tasks are there
	d.mu.Lock()
	if d.tasks[id] == t {
		delete(d.tasks, id)
	}
	d.mu.Unlock()
	d.removePauseIfUnused(ctx, id.AllocUID)
	return nil
}

// Recover returns every herd task container of the daemon, running or
// exited, ordered by ID.
func (d *Driver) Recover(ctx context.Context) ([]*driver.Handle, error) {
	list, err := d.client.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelAllocUID))})
	if err != nil {
		return nil, fmt.Errorf("docker: recover: %w", err)
	}
	var handles []*driver.Handle
	for _, c := range list {
		if c.Labels[labelPause] == "true" {
			continue
		}
		id := driver.TaskID{AllocUID: c.Labels[labelAllocUID], Task: c.Labels[labelTask]}
		t, err := d.find(id)
		if err != nil {
			d.cfg.Logger.Warn("docker: recover: skipping container", "container", c.ID, "err", err)
			continue
		}
		handles = append(handles, t.handle())
	}
	slices.SortFunc(handles, func(a, b *driver.Handle) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	return handles, nil
}

// Ports returns the host ports of the task's PortMap by name, as bound by
// the daemon (dynamic ports resolved).
func (d *Driver) Ports(ctx context.Context, id driver.TaskID) (map[string]int, error) {
	t, err := d.find(id)
	if err != nil {
		return nil, err
	}
	info, err := d.client.ContainerInspect(ctx, t.containerID)
	if err != nil {
		return nil, fmt.Errorf("docker: ports of task %s: %w", id, err)
	}
	owner := info
	if mode := info.HostConfig.NetworkMode; mode.IsContainer() {
		if owner, err = d.client.ContainerInspect(ctx, mode.ConnectedContainer()); err != nil {
			return nil, fmt.Errorf("docker: ports of task %s: network owner: %w", id, err)
		}
	}
	if owner.NetworkSettings == nil {
		return map[string]int{}, nil
	}
	return publishedPorts(info.Config.Labels, owner.NetworkSettings.Ports), nil
}

// removalInProgress reports the daemon's answer when another request is
// already removing the container: it will be gone, which is what the
// caller wants.
func removalInProgress(err error) bool {
	return cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress")
}
