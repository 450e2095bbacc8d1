// Package benchjobs measures the orchestrator end to end through its HTTP
// API, as a user sees it: how long from `apply` until every replica runs,
// how long until the allocations of a lost node run elsewhere, and how many
// store requests a workload costs.
package benchjobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/herd-project/herd/api"
)

// Client is the part of api.Client the benchmarks use.
type Client interface {
	PutJob(ctx context.Context, j *api.Job) (*api.Job, error)
	DeleteJob(ctx context.Context, ns, name string) error
	ScaleJob(ctx context.Context, ns, name string, req api.ScaleRequest) (*api.Job, error)
	ListAllocs(ctx context.Context, f api.AllocFilter) (*api.List[api.Allocation], error)
	Watch(ctx context.Context, kind string, o api.WatchOptions) (*api.Watcher, error)
}

// SleepJob is a service job of n replicas whose task only sleeps: it
// measures the orchestrator, not the task.
func SleepJob(name string, replicas int) *api.Job {
	j := &api.Job{
		Meta: api.Meta{Name: name, Namespace: api.DefaultNamespace},
		Spec: api.JobSpec{Type: api.JobService, Groups: []api.Group{{
			Name:  "main",
			Count: replicas,
			Tasks: []api.Task{{
				Name:        "sleep",
				Config:      api.TaskConfig{Command: "/bin/sh", Args: []string{"-c", "exec sleep 100000"}},
				KillTimeout: api.Duration(time.Second),
			}},
		}}},
	}
	j.Defaults()
	return j
}

// JobFunc builds the job a benchmark applies: name, of replicas replicas.
type JobFunc func(name string, replicas int) *api.Job

// DockerSleepJob returns a JobFunc for service jobs whose task runs image
// with the docker driver. The image must already be on the node (the pull
// policy is "never", so the figures hold no registry traffic) and its
// command must keep running until SIGTERM. command and args are optional:
// empty, the image's own command runs.
func DockerSleepJob(image, command string, args []string) JobFunc {
	args = slices.Clone(args)
	return func(name string, replicas int) *api.Job {
		j := SleepJob(name, replicas)
		t := &j.Spec.Groups[0].Tasks[0]
		t.Driver = "docker"
		t.Config = api.TaskConfig{
			Image:      image,
			PullPolicy: "never",
			Command:    command,
			Args:       slices.Clone(args),
		}
		return j
	}
}

// allocView follows the allocations of one job through a watch.
type allocView struct {
	allocs map[string]*api.Allocation
	w      *api.Watcher
	rv     string
}

func openView(ctx context.Context, c Client, job string) (*allocView, error) {
	list, err := c.ListAllocs(ctx, api.AllocFilter{Namespace: api.DefaultNamespace, Job: job})
	if err != nil {
		return nil, err
	}
	v := &allocView{allocs: map[string]*api.Allocation{}, rv: list.ResourceVersion}
	for i := range list.Items {
		v.allocs[list.Items[i].Name] = &list.Items[i]
	}
	v.w, err = c.Watch(ctx, "allocs", api.WatchOptions{Namespace: api.DefaultNamespace, Job: job, ResourceVersion: list.ResourceVersion})
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (v *allocView) close() { v.w.Close() }

// until reads events until cond holds for the current allocations.
func (v *allocView) until(cond func(map[string]*api.Allocation) bool) error {
	for !cond(v.allocs) {
		ev, err := v.w.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("watch ended")
			}
			return err
		}
		v.rv = ev.ResourceVersion
		if ev.Type == api.Bookmark {
			continue
		}
		var a api.Allocation
		if err := ev.Decode(&a); err != nil {
			return err
		}
		if ev.Type == api.Deleted {
			delete(v.allocs, a.Name)
		} else {
			v.allocs[a.Name] = &a
		}
	}
	return nil
}

// running counts allocations that run and are meant to.
func running(allocs map[string]*api.Allocation, keep func(*api.Allocation) bool) int {
	n := 0
	for _, a := range allocs {
		if a.Spec.DesiredStatus == api.DesiredRun && a.Status.ClientStatus == api.ClientRunning && (keep == nil || keep(a)) {
			n++
		}
	}
	return n
}

func runningExactly(n int) func(map[string]*api.Allocation) bool {
	return func(m map[string]*api.Allocation) bool {
		live := 0
		for _, a := range m {
			if !a.Status.ClientStatus.Terminal() {
				live++
			}
		}
		return running(m, nil) == n && live == n
	}
}

func gone(m map[string]*api.Allocation) bool { return len(m) == 0 }

// Startup applies a job of replicas sleeping tasks, times until all run,
// deletes it and waits until its allocations are gone; repeats times.
func Startup(ctx context.Context, c Client, replicas, repeats int) ([]time.Duration, error) {
	return StartupOf(ctx, c, replicas, repeats, SleepJob)
}

// StartupOf is Startup with the jobs built by job, such as DockerSleepJob.
func StartupOf(ctx context.Context, c Client, replicas, repeats int, job JobFunc) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < repeats; i++ {
		name := fmt.Sprintf("bench-startup-%d-%d", replicas, i)
		v, err := openView(ctx, c, name)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		if _, err := c.PutJob(ctx, job(name, replicas)); err != nil {
			v.close()
			return nil, err
		}
		if err := v.until(runningExactly(replicas)); err != nil {
			v.close()
			return nil, fmt.Errorf("waiting for %d running: %w", replicas, err)
		}
		out = append(out, time.Since(start))
		if err := c.DeleteJob(ctx, api.DefaultNamespace, name); err != nil {
			v.close()
			return nil, err
		}
		err = v.until(gone)
		v.close()
		if err != nil {
			return nil, fmt.Errorf("waiting for the allocations to go: %w", err)
		}
	}
	return out, nil
}

// Failover applies a job of replicas, waits until they run, calls kill
// (which is to take node's agent away for good) and times until every
// replica runs on another node. It deletes the job afterwards.
func Failover(ctx context.Context, c Client, replicas int, node string, kill func() error) (time.Duration, error) {
	name := fmt.Sprintf("bench-failover-%d", time.Now().UnixNano()%1e6)
	v, err := openView(ctx, c, name)
	if err != nil {
		return 0, err
	}
	defer v.close()
	if _, err := c.PutJob(ctx, SleepJob(name, replicas)); err != nil {
		return 0, err
	}
	if err := v.until(runningExactly(replicas)); err != nil {
		return 0, err
	}
	onNode := running(v.allocs, func(a *api.Allocation) bool { return a.Spec.Node == node })
	if onNode == 0 {
		return 0, fmt.Errorf("no allocation of %s runs on node %s; nothing would fail over", name, node)
	}
	start := time.Now()
	if err := kill(); err != nil {
		return 0, err
	}
	elsewhere := func(m map[string]*api.Allocation) bool {
		return running(m, func(a *api.Allocation) bool { return a.Spec.Node != node }) == replicas
	}
	if err := v.until(elsewhere); err != nil {
		return 0, err
	}
	took := time.Since(start)
	return took, c.DeleteJob(ctx, api.DefaultNamespace, name)
}

// TraceStep is one step of a trace and what it waits for.
type TraceStep struct {
	Name string
	Do   func(ctx context.Context, c Client) error
	Wait func(map[string]*api.Allocation) bool
}

// Table1Trace is the workload of seed 004's Table 1: create a service of 3,
// scale it to 10, scale it to 5, delete it; each step waits until the
// cluster has done it.
func Table1Trace(job string) []TraceStep {
	scale := func(n int) func(context.Context, Client) error {
		return func(ctx context.Context, c Client) error {
			_, err := c.ScaleJob(ctx, api.DefaultNamespace, job, api.ScaleRequest{Count: n})
			return err
		}
	}
	return []TraceStep{
		{"create 3", func(ctx context.Context, c Client) error { _, err := c.PutJob(ctx, SleepJob(job, 3)); return err }, runningExactly(3)},
		{"scale to 10", scale(10), runningExactly(10)},
		{"scale to 5", scale(5), runningExactly(5)},
		{"delete", func(ctx context.Context, c Client) error { return c.DeleteJob(ctx, api.DefaultNamespace, job) }, gone},
	}
}

// RunTrace runs steps against one job and returns how long each took.
func RunTrace(ctx context.Context, c Client, job string, steps []TraceStep) ([]time.Duration, error) {
	v, err := openView(ctx, c, job)
	if err != nil {
		return nil, err
	}
	defer v.close()
	var took []time.Duration
	for _, s := range steps {
		start := time.Now()
		if err := s.Do(ctx, c); err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		if err := v.until(s.Wait); err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		took = append(took, time.Since(start))
	}
	return took, nil
}
