package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/herd-project/herd/internal/driver"
)

// ensurePause returns the id of the allocation's running pause container,
// creating it (with the port bindings of req's task) for the first task.
func (d *Driver) ensurePause(ctx context.Context, req driver.StartRequest) (string, error) {
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	exposed, bindings, err := portBindings(req.Task.Config.PortMap)
	if err != nil {
		return "", err
	}
	info, err := d.client.ContainerInspect(ctx, pauseName(req.ID.AllocUID))
	if err == nil {
		for port := range bindings {
			if _, ok := info.HostConfig.PortBindings[port]; !ok {
				return "", fmt.Errorf("port %s cannot be published: the allocation's network was created by an earlier task without it", port)
			}
		}
		if info.State == nil || !info.State.Running {
			if err := d.client.ContainerStart(ctx, info.ID, container.StartOptions{}); err != nil {
				return "", fmt.Errorf("restart the allocation's pause container: %w", err)
			}
		}
		return info.ID, nil
	}
	if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect pause container: %w", err)
	}
	if err := d.ensurePauseImage(ctx); err != nil {
		return "", err
	}
	created, err := d.client.ContainerCreate(ctx, &container.Config{
		Image: d.pause.tag,
		Env:   []string{pauseEnv + "=1"},
		Labels: map[string]string{
			labelAllocUID:  req.ID.AllocUID,
			labelAllocName: req.AllocName,
			labelNamespace: req.Namespace,
			labelPause:     "true",
		},
		ExposedPorts: exposed,
	}, &container.HostConfig{NetworkMode: "bridge", PortBindings: bindings}, nil, nil, pauseName(req.ID.AllocUID))
	if err != nil {
		return "", fmt.Errorf("create the allocation's pause container: %w", err)
	}
	if err := d.client.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		d.client.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
		return "", fmt.Errorf("start the allocation's pause container: %w", err)
	}
	return created.ID, nil
}

// ensurePauseImage builds the pause image unless present. Callers hold
// allocMu.
func (d *Driver) ensurePauseImage(ctx context.Context) error {
	if _, err := d.client.ImageInspect(ctx, d.pause.tag); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect pause image: %w", err)
	}
	return buildScratchImage(ctx, d.client, d.pause.tag, d.pause.path, "pause", map[string]string{labelPause: "true"})
}

// removePauseIfUnused removes the allocation's pause container once no
// task container of the allocation is left.
func (d *Driver) removePauseIfUnused(ctx context.Context, allocUID string) {
	d.allocMu.Lock()
	defer d.allocMu.Unlock()
	list, err := d.client.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", labelAllocUID+"="+allocUID))})
	if err != nil {
		d.cfg.Logger.Warn("docker: cannot list the allocation's containers", "alloc", allocUID, "err", err)
		return
	}
	var pauses []string
	for _, c := range list {
		if c.Labels[labelPause] != "true" {
			return
		}
		pauses = append(pauses, c.ID)
	}
	for _, id := range pauses {
		err := d.client.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			d.cfg.Logger.Warn("docker: cannot remove pause container", "alloc", allocUID, "err", err)
		}
	}
}
