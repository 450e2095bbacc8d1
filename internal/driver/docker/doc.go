// Package docker is the "docker" task driver: it runs a task as a container
// of the local Docker daemon, through the Engine API (the API version is
// negotiated, so daemons down to API 1.41 / Docker 20.10 work).
//
// # Labels are the state
//
// Every container the driver creates carries the labels herd.alloc.uid,
// herd.alloc.name, herd.namespace and herd.task (plus herd.log.dir and one
// herd.port.<name> label per published port), and is named
// herd-<allocUID>-<task>. The daemon therefore knows everything a restarted
// agent needs: Recover lists the containers labelled herd.alloc.uid, in any
// state, and returns a Handle for each task container. Exit codes are never
// lost: Docker keeps an exited container, with its exit code and OOM flag,
// until Destroy removes it.
//
// # Group networking: the pause container
//
// The tasks of one allocation share one network namespace, as in a
// Kubernetes pod, so that they reach each other on localhost. The first
// task of an allocation creates a "pause" container (labels herd.alloc.uid,
// herd.alloc.name and herd.pause=true but no herd.task, name
// herd-pause-<allocUID>) that owns the namespace;
// the task containers join it with network mode "container:<pause id>".
// Images cannot be assumed pullable, so the pause image is built locally,
// FROM scratch, holding only the herd binary itself (Config.PauseBinary)
// which, started with HERD_PAUSE=1, sleeps until SIGTERM
// (RunPauseIfRequested). This needs a statically linked binary: when it is
// dynamically linked, every task gets its own bridge network instead and
// Fingerprint says so.
//
// Port bindings belong to the namespace's owner, so they are made on the
// pause container when it is created, from the PortMap of the task that
// creates it. A later task of the same allocation can only use ports that
// are already published; it fails to start otherwise. Destroying the last
// task container of an allocation removes its pause container.
//
// # Logs
//
// For each task a follower reads the container's output (ContainerLogs,
// follow, with timestamps), splits stdout from stderr (stdcopy) and
// appends it, without the timestamps, to rotating files in the task's
// LogDir (package logstore). The timestamp of the last line written to each
// stream is kept in <StateDir>/<allocUID>/<task>.json, at most a second
// behind, so that a restarted driver resumes with Since and skips lines it
// already wrote: at most a second of output may be repeated after a crash,
// none after a clean Close.
package docker
