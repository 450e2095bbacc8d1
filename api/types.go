// Package api holds herd's wire types (jobs, allocations, nodes, events),
// their validation, the decoding of job files and the Go client of the HTTP
// API. Every other part of herd speaks these types: the API server stores
// them as JSON in the store, the scheduler and controllers reason about them,
// the agent and the CLI receive them over HTTP.
package api

import "time"

// DefaultNamespace is used when an object names no namespace.
const DefaultNamespace = "default"

// Meta is the metadata every stored object carries.
type Meta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	// UID identifies one incarnation of the object: it changes when an object
	// is deleted and created again under the same name, and when an
	// allocation is replaced.
	UID string `json:"uid,omitempty"`
	// ResourceVersion is the store's mod_revision of the object, in decimal.
	// An update that names a ResourceVersion succeeds only if the object is
	// still at that version (optimistic concurrency); otherwise 409.
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	CreatedAt       time.Time         `json:"createdAt,omitzero"`
	Labels          map[string]string `json:"labels,omitempty"`
}

// Namespace is a tenancy boundary for names. The "default" namespace always
// exists.
type Namespace struct {
	Meta `json:"metadata"`
}

// JobType says how a job's allocations live.
type JobType string

const (
	// JobService runs its groups forever, replacing allocations that fail.
	JobService JobType = "service"
	// JobBatch runs its groups to completion.
	JobBatch JobType = "batch"
)

// Job is what a user submits.
type Job struct {
	Meta   `json:"metadata"`
	Spec   JobSpec   `json:"spec"`
	Status JobStatus `json:"status,omitzero"`
}

// JobSpec is the user's desired state of a job.
type JobSpec struct {
	Type JobType `json:"type"`
	// Priority between 1 and 100, default 50.
	Priority int     `json:"priority,omitempty"`
	Groups   []Group `json:"groups"`
}

// JobPhase summarises a job.
type JobPhase string

const (
	JobPending  JobPhase = "pending"
	JobRunning  JobPhase = "running"
	JobComplete JobPhase = "complete"
	JobFailed   JobPhase = "failed"
)

// JobStatus is the observed state of a job, written by the controllers.
type JobStatus struct {
	Phase JobPhase `json:"phase,omitempty"`
	// Groups counts allocations per group by client status.
	Groups map[string]GroupSummary `json:"groups,omitempty"`
	// Message explains a failed job.
	Message string `json:"message,omitempty"`
}

// GroupSummary counts a group's allocations.
type GroupSummary struct {
	Desired  int `json:"desired"`
	Pending  int `json:"pending"`
	Running  int `json:"running"`
	Complete int `json:"complete"`
	Failed   int `json:"failed"`
	Lost     int `json:"lost"`
}

// Group is a set of tasks placed together on one node (a Kubernetes pod).
type Group struct {
	Name          string         `json:"name"`
	Count         int            `json:"count"`
	Tasks         []Task         `json:"tasks"`
	RestartPolicy *RestartPolicy `json:"restartPolicy,omitempty"`
	Constraints   []Constraint   `json:"constraints,omitempty"`
}

// RestartMode says what happens when a task has used its restart attempts
// within the interval.
type RestartMode string

const (
	// RestartFail marks the allocation failed.
	RestartFail RestartMode = "fail"
	// RestartDelay waits until the interval has passed and tries again.
	RestartDelay RestartMode = "delay"
)

// RestartPolicy governs restarts of a task on its node, done by the agent.
type RestartPolicy struct {
	// Attempts is how many restarts are allowed within Interval.
	Attempts int      `json:"attempts"`
	Interval Duration `json:"interval"`
	// Delay is the wait before a restart; it doubles with each attempt in
	// the interval.
	Delay Duration    `json:"delay"`
	Mode  RestartMode `json:"mode"`
}

// DefaultRestartPolicy is used for groups that name none, like Nomad's.
func DefaultRestartPolicy(t JobType) RestartPolicy {
	if t == JobBatch {
		return RestartPolicy{Attempts: 3, Interval: Duration(24 * time.Hour), Delay: Duration(time.Second), Mode: RestartFail}
	}
	return RestartPolicy{Attempts: 2, Interval: Duration(30 * time.Minute), Delay: Duration(time.Second), Mode: RestartFail}
}

// ConstraintOperator compares a node attribute or label with a value.
type ConstraintOperator string

const (
	OpEqual    ConstraintOperator = "=="
	OpNotEqual ConstraintOperator = "!="
)

// Constraint restricts the nodes a group may run on. Attribute is
// "attr.<name>" (os, arch, cpu, memory, name) or "label.<key>".
type Constraint struct {
	Attribute string             `json:"attribute"`
	Operator  ConstraintOperator `json:"operator"`
	Value     string             `json:"value"`
}

// Task is one process (or, later, container) inside a group.
type Task struct {
	Name   string     `json:"name"`
	Driver string     `json:"driver"`
	Config TaskConfig `json:"config"`
	// Resources the task requests; the scheduler reserves them on a node and
	// the agent enforces the limits where the host allows.
	Resources Resources `json:"resources,omitzero"`
	// KillTimeout is how long the agent waits after SIGTERM before SIGKILL.
	// Default 5s.
	KillTimeout Duration `json:"killTimeout,omitempty"`
}

// TaskConfig tells the driver what to run.
type TaskConfig struct {
	Command string            `json:"command"`
	Args    []string          `json:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// WorkingDir is relative to the task's own directory under the agent's
	// data dir; absolute paths are used as given.
	WorkingDir string `json:"workingDir,omitempty"`

	// The fields below are read by the docker driver only. For a docker
	// task Command is optional (the image's default command runs) and
	// WorkingDir is a path inside the container.

	// Image is the container image to run; required for the docker driver.
	Image string `json:"image,omitempty"`
	// PullPolicy is "if-not-present" (default), "always" or "never".
	PullPolicy string `json:"pullPolicy,omitempty"`
	// NetworkMode is "bridge" (default: the allocation's tasks share one
	// network namespace), "host" or "none".
	NetworkMode string `json:"networkMode,omitempty"`
	// Privileged gives the container all capabilities and devices.
	Privileged bool `json:"privileged,omitempty"`
	// Devices are host devices to expose: "/dev/x[:/dev/y[:rwm]]".
	Devices []string `json:"devices,omitempty"`
	// Volumes are bind mounts: "/host/path:/container/path[:ro]".
	Volumes []string `json:"volumes,omitempty"`
	// User runs the container's process as "user[:group]" (names or ids).
	User string `json:"user,omitempty"`
	// Labels are added to the container's labels.
	Labels map[string]string `json:"labels,omitempty"`
	// PortMap publishes container ports on the host.
	PortMap []PortMapping `json:"portMap,omitempty"`
}

// PortMapping publishes a container port on a host port (docker driver).
type PortMapping struct {
	Name          string `json:"name"`
	ContainerPort int    `json:"containerPort"`
	// HostPort 0 lets the host choose a free port.
	HostPort int `json:"hostPort,omitempty"`
	// Protocol is "tcp" (default) or "udp".
	Protocol string `json:"protocol,omitempty"`
}

// Resources are what a task requests or a node offers.
type Resources struct {
	// CPU in millicores (1000 = one core).
	CPU int64 `json:"cpu,omitempty"`
	// Memory in bytes.
	Memory int64 `json:"memory,omitempty"`
	// Ports are static host ports the task needs exclusively.
	Ports []Port `json:"ports,omitempty"`
}

// Port is a named static host port.
type Port struct {
	Name string `json:"name"`
	Port int    `json:"port"`
}

// Add returns r plus o (CPU and memory; ports are appended).
func (r Resources) Add(o Resources) Resources {
	r.CPU += o.CPU
	r.Memory += o.Memory
	r.Ports = append(append([]Port(nil), r.Ports...), o.Ports...)
	return r
}

// GroupResources sums the requests of a group's tasks.
func (g *Group) GroupResources() Resources {
	var sum Resources
	for _, t := range g.Tasks {
		sum = sum.Add(t.Resources)
	}
	return sum
}

// DesiredStatus is what the control plane wants of an allocation.
type DesiredStatus string

const (
	DesiredRun  DesiredStatus = "run"
	DesiredStop DesiredStatus = "stop"
)

// ClientStatus is what the agent reports of an allocation.
type ClientStatus string

const (
	ClientPending  ClientStatus = "pending"
	ClientRunning  ClientStatus = "running"
	ClientComplete ClientStatus = "complete"
	ClientFailed   ClientStatus = "failed"
	// ClientLost is set by the node controller when the allocation's node
	// went down.
	ClientLost ClientStatus = "lost"
)

// Terminal reports whether no task of the allocation will run again.
func (s ClientStatus) Terminal() bool {
	return s == ClientComplete || s == ClientFailed || s == ClientLost
}

// Allocation is one placed instance of a group. Its name is deterministic,
// AllocName(job, group, index), so two controllers creating the same replica
// create one object. A replacement of a failed or lost allocation reuses the
// name with a new UID.
type Allocation struct {
	Meta   `json:"metadata"`
	Spec   AllocSpec   `json:"spec"`
	Status AllocStatus `json:"status,omitzero"`
}

// AllocSpec is written by the controllers (job, group, desired status) and
// the scheduler (node).
type AllocSpec struct {
	Job   string `json:"job"`
	Group string `json:"group"`
	Index int    `json:"index"`
	// JobUID is the UID of the job incarnation this allocation belongs to.
	JobUID string `json:"jobUID,omitempty"`
	// JobVersion is the job's resource version the group was copied from.
	JobVersion string `json:"jobVersion,omitempty"`
	// GroupSpec is a copy of the group at creation, so the agent needs
	// nothing but the allocation to run it.
	GroupSpec Group   `json:"groupSpec"`
	JobType   JobType `json:"jobType"`
	// Node is empty until the scheduler places the allocation.
	Node          string        `json:"node,omitempty"`
	DesiredStatus DesiredStatus `json:"desiredStatus"`
	// DesiredReason says why an allocation is to stop ("scaled down", "job
	// deleted", "node lost").
	DesiredReason string `json:"desiredReason,omitempty"`
	// Attempt counts replacements of this allocation name (0 = original).
	Attempt int `json:"attempt,omitempty"`
	// NotBefore delays placement of a replacement (rescheduling backoff).
	NotBefore time.Time `json:"notBefore,omitzero"`
	// PreviousNode is where the replaced incarnation ran.
	PreviousNode string `json:"previousNode,omitempty"`
}

// AllocStatus is written by the agent (client status, task states), the
// scheduler (placement failure) and the node controller (lost).
type AllocStatus struct {
	ClientStatus ClientStatus         `json:"clientStatus,omitempty"`
	Tasks        map[string]TaskState `json:"tasks,omitempty"`
	// PlacementFailure explains why the scheduler could not place the
	// allocation, for example "0/3 nodes eligible: 2 lacked memory, 1 draining".
	PlacementFailure string    `json:"placementFailure,omitempty"`
	Events           []Event   `json:"events,omitempty"`
	UpdatedAt        time.Time `json:"updatedAt,omitzero"`
}

// MaxAllocEvents is how many recent events an allocation keeps.
const MaxAllocEvents = 10

// TaskPhase is the state of one task.
type TaskPhase string

const (
	TaskPending TaskPhase = "pending"
	TaskRunning TaskPhase = "running"
	TaskDead    TaskPhase = "dead"
)

// TaskState is what the agent reports of one task.
type TaskState struct {
	State      TaskPhase `json:"state"`
	Failed     bool      `json:"failed,omitempty"`
	ExitCode   *int      `json:"exitCode,omitempty"`
	Signal     string    `json:"signal,omitempty"`
	Restarts   int       `json:"restarts"`
	PID        int       `json:"pid,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	Message    string    `json:"message,omitempty"`
	// Ports are the host ports of the running task by port name, as its
	// driver assigned them (dynamic ports resolved); only drivers that
	// publish ports report them.
	Ports map[string]int `json:"ports,omitempty"`
}

// NodeStatus says whether a node's agent is heard from.
type NodeStatus string

const (
	NodeReady NodeStatus = "ready"
	NodeDown  NodeStatus = "down"
)

// Availability is the operator's say over new placements on a node.
type Availability string

const (
	// Active nodes take new allocations.
	Active Availability = "active"
	// Pause keeps running allocations and takes no new ones.
	Pause Availability = "pause"
	// Drain takes no new allocations and moves the running ones elsewhere.
	Drain Availability = "drain"
)

// Node is a machine running the agent.
type Node struct {
	Meta   `json:"metadata"`
	Spec   NodeSpec `json:"spec"`
	Status NodeInfo `json:"status"`
}

// NodeSpec is the operator's part of a node.
type NodeSpec struct {
	Availability Availability `json:"availability"`
}

// NodeInfo is the agent's and node controller's part of a node.
type NodeInfo struct {
	Status NodeStatus `json:"status"`
	// Address is the agent's HTTP address (host:port), used to fetch logs.
	Address    string            `json:"address"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// Capacity is the machine's; Allocatable what herd may hand out.
	Capacity    Resources `json:"capacity"`
	Allocatable Resources `json:"allocatable"`
	Drivers     []string  `json:"drivers"`
	// AgentID changes every time the agent starts.
	AgentID       string    `json:"agentID,omitempty"`
	LastHeartbeat time.Time `json:"lastHeartbeat,omitzero"`
	// Message says why a node is down or what limits its agent has (for
	// example "cgroups unavailable: limits not enforced").
	Message string `json:"message,omitempty"`
}

// Standard node attribute names.
const (
	AttrOS     = "os"
	AttrArch   = "arch"
	AttrCPU    = "cpu"
	AttrMemory = "memory"
	AttrName   = "name"
)

// EventType separates normal events from warnings.
type EventType string

const (
	EventNormal  EventType = "Normal"
	EventWarning EventType = "Warning"
)

// Event records something that happened to an object.
type Event struct {
	Time time.Time `json:"time"`
	Type EventType `json:"type"`
	// Kind and Name identify the object (Job, Allocation, Node).
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Reason    string `json:"reason"`
	Message   string `json:"message"`
	// Source is the component that recorded it (scheduler, agent/<node>, ...).
	Source string `json:"source,omitempty"`
}

// Kinds of objects, as used in events, watch streams and errors.
const (
	KindJob        = "Job"
	KindAllocation = "Allocation"
	KindNode       = "Node"
	KindNamespace  = "Namespace"
	KindEvent      = "Event"
)

// GetMeta returns the object's metadata; every stored type has it through
// its embedded Meta.
func (m *Meta) GetMeta() *Meta { return m }

// Object is any stored API object.
type Object interface{ GetMeta() *Meta }
