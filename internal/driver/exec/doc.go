// Package exec is the "exec" task driver: it runs a task as a plain process
// on the host, with its own process group, environment and working
// directory, its output in rotating log files (package logstore) and, where
// the host allows, its memory and CPU limited by a cgroup.
//
// # The shim
//
// The driver does not run tasks as its own children. For every task it
// starts a small supervisor process, the shim, which is the herd binary
// re-executed with HERD_EXEC_SHIM=1 (RunShimIfRequested turns the process
// into the shim). The shim runs in its own session and:
//
//   - starts the task in its own process group (so that Stop reaches the
//     task's children too) and, on cgroup v1, moves it into the task's
//     cgroups;
//   - copies the task's stdout and stderr from pipes into logstore writers,
//     which rotate the files by size;
//   - writes state.json (its own pid and the task's pid, each with the
//     process start time from /proc/<pid>/stat so that a recycled pid is
//     never mistaken for them) and only then tells the driver that the task
//     runs;
//   - waits for the task, kills what is left of its process group, and
//     writes exit.json (exit code, signal, OOM kill, finish time)
//     atomically before it exits.
//
// Why a shim rather than children of the agent:
//
//   - Tasks survive an agent restart or upgrade. A new driver instance finds
//     the shims through the state directory (Recover) and watches them with
//     pidfd_open(2), as they are no longer its children.
//   - Exit codes are never lost. Only a process's parent can collect its exit
//     status; the shim is the task's parent for its whole life and records
//     the status on disk, so a task that exits while no agent runs still
//     reports its exit code to the next one.
//   - Logs keep being written and rotated while no agent runs: a task
//     writing to a pipe whose reader is gone would get SIGPIPE, and a task
//     writing straight to a file could not be rotated.
//
// # State on disk
//
// Each task has a directory <StateDir>/<allocUID>/<task>/ holding
// input.json (what the shim runs, written by the driver), state.json and
// exit.json (written by the shim) and shim.log (the shim's own output, for
// diagnosing failures). Destroy removes the directory; log files live in the
// request's LogDir and stay.
//
// # Cgroups
//
// New detects cgroup v2 (a unified hierarchy at <CgroupRoot> with
// cgroup.controllers) or v1 (separate memory and cpu hierarchies) and
// creates per task a cgroup <CgroupParent>/<allocUID>-<task> with the task's
// memory limit and a CPU quota of CPU millicores per 100ms period. On v2 the
// task is started directly inside its cgroup (clone3 with CLONE_INTO_CGROUP).
// On v1 the shim writes the task's pid into cgroup.procs right after
// starting it. In that window of a few microseconds the task's first
// instructions run unlimited, and a child forked within it would stay
// outside the cgroup. When cgroups are unavailable (not
// root, read-only, missing controllers) tasks still run and Fingerprint
// says that limits are not enforced.
package exec
