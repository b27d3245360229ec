// Package api defines the wire types of baicommit's HTTP/JSON API
// (version 1). The agent serves them under /v1 on its unix socket and, for
// the manager, on TCP; baicommit-manager serves the same routes for the
// whole cluster, plus RouteNodes. The client package and the CLI consume
// them.
package api

import (
	"regexp"
	"time"
)

// Version is the API version prefix every route lives under.
const Version = "v1"

// Routes of the agent API, relative to the server root.
const (
	RouteFreezes  = "/v1/freezes"  // POST: start a freeze (FreezeRequest → Task, 202)
	RouteTasks    = "/v1/tasks"    // GET: the caller's tasks ([]Task, newest first)
	RouteTask     = "/v1/tasks/"   // GET /v1/tasks/{id}: one task
	RouteSessions = "/v1/sessions" // GET: the caller's containers ([]Session)
	RouteVersion  = "/v1/version"  // GET: VersionInfo
	// RouteArchives lists the caller's archives, found through the
	// sidecars below their save directory (ArchiveList, newest first).
	// The manager, which may not read users' files, asks an agent, whose
	// helper reads them as the user.
	RouteArchives = "/v1/archives"
	// RouteUsage says how much the caller keeps below their save
	// directory, against the quotas (Usage).
	RouteUsage = "/v1/usage"
	// RouteArchivesPrune applies the retention rules to the caller's
	// archives (PruneRequest → PruneResult); RouteArchivesRemove removes
	// archives the caller names (RemoveRequest → RemoveResult).
	RouteArchivesPrune  = "/v1/archives/prune"
	RouteArchivesRemove = "/v1/archives/remove"
	// RouteJobs prefixes the routes of one Slurm job:
	// POST /v1/jobs/{job}/freezes freezes the job's sessions
	// (JobFreezeRequest → JobFreezes, 202).
	RouteJobs = "/v1/jobs/"

	// RouteNodes is the manager's: GET the nodes and their agents' health
	// ([]NodeStatus).
	RouteNodes = "/v1/nodes"
)

// Query parameters of RouteSessions on the manager (the agent reads only
// QueryUser): whose sessions, and where to look.
const (
	QueryUser = "user"
	QueryNode = "node"
	QueryJob  = "job"
)

// QueryQuotas is the query parameter of RouteUsage, RouteArchivesPrune
// and RouteArchivesRemove that carries the site's quotas (Quotas as JSON)
// from the manager to an agent, as FreezeRequest.Quotas does for a
// freeze; agents accept it only from the manager (or root).
const QueryQuotas = "quotas"

// QuerySavePath is the query parameter of RouteArchives that carries the
// site's save path template from the manager to an agent, as
// FreezeRequest.SavePath does for a freeze: the agent accepts it only from
// the manager (or root) and lists only below its own save_roots.
const QuerySavePath = "save_path"

// QueryStorePath carries the site's layer store path template to an
// agent's RouteArchives, as QuerySavePath does the save path.
const QueryStorePath = "store_path"

// JobFreezesPath is the route that freezes the sessions of Slurm job job.
func JobFreezesPath(job string) string { return RouteJobs + job + "/freezes" }

// Values of the session label LabelFreeze (set with `podman run --label`).
const (
	// LabelJob names the Slurm job a session belongs to.
	LabelJob = "baicommit.job"
	// LabelFreeze says when a session wants to be frozen.
	LabelFreeze = "baicommit.freeze"
	// FreezeOnExit: freeze it when its job ends (the Slurm epilog).
	FreezeOnExit = "on-exit"
	// FreezeOnSignal: the batch script's signal helper freezes it before
	// the job is killed; the epilog leaves it alone.
	FreezeOnSignal = "on-signal"
	// FreezeNever: never frozen automatically, whatever the site policy.
	FreezeNever = "never"
)

// Triggers: why a freeze was started (Task.Trigger, Sidecar.Trigger).
const (
	TriggerRequest = ""       // someone asked for it
	TriggerEpilog  = "epilog" // its Slurm job ended
)

// JobFreezeRequest asks the agent to freeze the sessions of a Slurm job
// that ended on this node (the epilog's request).
type JobFreezeRequest struct {
	// User owns the job (name or numeric uid); required.
	User string `json:"user"`
	// Exit is the job's exit status as Slurm gives it to the epilog in
	// SLURM_JOB_EXIT_CODE2 ("EXIT:SIGNAL", e.g. "0:0" or "0:9").
	Exit string `json:"exit,omitempty"`
}

// JobFreezes answers a JobFreezeRequest.
type JobFreezes struct {
	Job string `json:"job"`
	// Policy is the site's epilog_freeze that selected the sessions.
	Policy string `json:"policy"`
	// Tasks are the freezes started (or already running) for the job.
	Tasks []Task `json:"tasks"`
	// Skipped are the job's containers left alone, and why.
	Skipped []JobSkip `json:"skipped,omitempty"`
}

// JobSkip is one container of a job the epilog did not freeze.
type JobSkip struct {
	Container string `json:"container"`
	Reason    string `json:"reason"`
}

// FreezeRequest asks the agent to freeze one container.
type FreezeRequest struct {
	// Container is the container's name or (full or short) id.
	Container string `json:"container"`
	// User names the owner whose rootless Podman holds the container
	// (a user name or numeric uid). Empty means the caller.
	User string `json:"user,omitempty"`
	// Image is the optional name:tag the frozen image gets; the default is
	// localhost/baicommit/<container>:<timestamp>.
	Image string `json:"image,omitempty"`
	// Job is the Slurm job id the session belongs to, when known.
	Job string `json:"job,omitempty"`
	// SavePath is a site-wide save path template that the manager passes
	// on; the agent accepts it only from the manager (or root) and only
	// below its own save_roots. Empty means the agent's save_path.
	SavePath string `json:"save_path,omitempty"`
	// Node is the node that runs the container. The manager routes by it
	// (or by Job); an agent refuses a request meant for another node.
	Node string `json:"node,omitempty"`
	// Push, when set, pushes the frozen image to a registry once the
	// archive is written.
	Push *PushRequest `json:"push,omitempty"`
	// Before are commands run in the session before it is read (cleaning
	// caches, say), each a command line split as a shell would but run
	// without one, as the container's user; they run after the site's.
	Before []string `json:"before,omitempty"`
	// Exclude are glob patterns of container paths the caller leaves out
	// of this freeze, with everything below them, on top of the site's.
	Exclude []string `json:"exclude,omitempty"`
	// Quotas are the site's limits the manager passes on; the agent takes
	// them only from the manager (or root). Nil means the agent's own.
	Quotas *Quotas `json:"quotas,omitempty"`
	// Format is what the freeze writes: FormatArchive, FormatStore or
	// FormatBoth; empty means the site's default. The site says which
	// formats may be asked for.
	Format string `json:"format,omitempty"`
	// StorePath is a site-wide layer store path template that the
	// manager passes on, as SavePath; empty means the agent's store_path.
	StorePath string `json:"store_path,omitempty"`
}

// Quota limits what a user, or a Unix group's project directory, keeps on
// the shared filesystem. Zero means no limit.
type Quota struct {
	MaxArchives int   `json:"max_archives,omitempty"`
	MaxBytes    int64 `json:"max_bytes,omitempty"`
}

// Quotas are a site's limits.
type Quotas struct {
	// User is every user's quota below their save directory.
	User Quota `json:"user,omitzero"`
	// Groups are the quotas of project directories: a directory of the
	// save path that belongs to one of these groups (setgid, so that the
	// archives below it do too) counts all of that group's archives.
	Groups map[string]Quota `json:"groups,omitempty"`
	// MaxFreezeSize refuses a freeze whose changes (the new layer) are
	// larger, in bytes.
	MaxFreezeSize int64 `json:"max_freeze_size,omitempty"`
}

// Usage is what a user keeps below their save directory.
type Usage struct {
	Dir      string `json:"dir"`
	Archives int    `json:"archives"`
	// Bytes counts the archives and their sidecars, as du does.
	Bytes       int64            `json:"bytes"`
	ByContainer []ContainerUsage `json:"by_container"`
	// Quota is the user's, when the site sets one.
	Quota *Quota `json:"quota,omitempty"`
	// Store is the user's layer store, StoreBytes what their blobs there
	// take (each blob once, however many images use it) and StoreImages
	// how many images of theirs it holds; Bytes includes StoreBytes and
	// Archives StoreImages.
	Store       string `json:"store,omitempty"`
	StoreBytes  int64  `json:"store_bytes,omitempty"`
	StoreImages int    `json:"store_images,omitempty"`
	// Groups are the project directories with a quota that the user's
	// save directory lies in, and their whole group's usage.
	Groups   []GroupUsage `json:"groups,omitempty"`
	Warnings []string     `json:"warnings,omitempty"`
}

// ContainerUsage is one source container's share of a usage.
type ContainerUsage struct {
	Container string    `json:"container"`
	Archives  int       `json:"archives"`
	Bytes     int64     `json:"bytes"`
	Newest    time.Time `json:"newest"`
}

// GroupUsage is a project directory's usage against its group's quota.
type GroupUsage struct {
	Group    string `json:"group"`
	Dir      string `json:"dir"`
	Archives int    `json:"archives"`
	Bytes    int64  `json:"bytes"`
	Quota    Quota  `json:"quota"`
}

// PruneRequest asks for the retention rules to be applied.
type PruneRequest struct {
	// DryRun lists what would go and removes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// PruneResult says what a prune removed (or would remove).
type PruneResult struct {
	Dir     string         `json:"dir"`
	DryRun  bool           `json:"dry_run,omitempty"`
	Removed []ArchiveEntry `json:"removed"`
	// Kept counts the archives left.
	Kept int `json:"kept"`
	// Freed counts the bytes removed (or that would be).
	Freed    int64    `json:"freed"`
	Warnings []string `json:"warnings,omitempty"`
}

// RemoveRequest names archives to remove, with their sidecars.
type RemoveRequest struct {
	Paths []string `json:"paths"`
}

// RemoveResult says which went.
type RemoveResult struct {
	Removed []string `json:"removed"`
	Freed   int64    `json:"freed"`
}

// CommandResult is how a command run before a freeze went.
type CommandResult struct {
	Command string `json:"command"`
	// Source is "site" (before_freeze in agent.toml) or "user".
	Source   string  `json:"source"`
	ExitCode int     `json:"exit_code"`
	Seconds  float64 `json:"seconds"`
	// Output is the end of what it printed (stdout and stderr).
	Output string `json:"output,omitempty"`
	// Error says why it did not run, or did not end in time.
	Error string `json:"error,omitempty"`
}

// Formats a freeze writes (FreezeRequest.Format, Task.Format).
const (
	// FormatArchive is one self-contained .tar.gz (OCI layout and
	// docker-archive in one) with its .json sidecar.
	FormatArchive = "archive"
	// FormatStore writes into the layer store on the shared filesystem
	// only the blobs it lacks (normally the new layer, the config and
	// the manifest), and a small OCI image layout for the image.
	FormatStore = "store"
	// FormatBoth writes both, from one pass over the layers.
	FormatBoth = "both"
)

// AllFormats are all formats, in the order a choice is offered.
func AllFormats() []string { return []string{FormatArchive, FormatStore, FormatBoth} }

// StoreImage describes an image a freeze wrote into a layer store.
type StoreImage struct {
	// Path is the image's OCI layout (STORE/images/NAME): podman pull
	// oci:PATH and skopeo read it; Sidecar is its sidecar file.
	Path    string `json:"path"`
	Sidecar string `json:"sidecar,omitempty"`
	// Manifest is the digest of the image's manifest.
	Manifest string `json:"manifest,omitempty"`
	// Size is what the image's blobs take, shared ones included.
	Size int64 `json:"size,omitempty"`
	// Written is what this freeze wrote into the store; Reused counts the
	// layers it found there already.
	Written int64 `json:"written,omitempty"`
	Reused  int   `json:"reused,omitempty"`
}

// PushRequest asks for the frozen image to be pushed to an OCI registry
// with the owner's credentials.
type PushRequest struct {
	// Ref is the destination NAME[:TAG] (registry host included).
	Ref string `json:"ref"`
	// Creds is USER:PASSWORD for the registry. The agent hands it to the
	// push helper on a pipe and never stores or logs it; without it the
	// owner's own auth files are used.
	Creds string `json:"creds,omitempty"`
	// AuthFile is an auth file to use instead of the owner's default
	// ones, read as the owner.
	AuthFile string `json:"authfile,omitempty"`
	// TLSVerify false allows plain HTTP and unverified certificates.
	TLSVerify *bool `json:"tls_verify,omitempty"`
}

// Push states.
const (
	PushPending   = "pending"
	PushRunning   = "running"
	PushSucceeded = "pushed"
	PushFailed    = "failed"
)

// PushStatus is the push part of a task: where to, how far, and how it
// ended. It never holds credentials.
type PushStatus struct {
	Ref    string `json:"ref"`
	State  string `json:"state"`
	Digest string `json:"digest,omitempty"` // manifest digest in the registry
	Error  string `json:"error,omitempty"`
	// Sent and Total count layer bytes read for the push so far.
	Sent  int64 `json:"sent,omitempty"`
	Total int64 `json:"total,omitempty"`
}

// PushRecord is one push of an archive, as its sidecar remembers it.
type PushRecord struct {
	Ref    string    `json:"ref"`
	Digest string    `json:"digest"`
	Pushed time.Time `json:"pushed"`
}

// Task states.
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

// Phases of a running task.
const (
	PhaseConnecting = "connecting" // reaching the owner's Podman
	PhaseBefore     = "before"     // running the commands asked for before the freeze
	PhasePausing    = "pausing"    // pausing the container for a consistent read
	PhaseCommitting = "committing" // podman commit (the commit path only)
	PhaseExporting  = "exporting"  // reading the layers, compressing, writing
	PhaseFinishing  = "finishing"  // fsync, rename, sidecar, image clean-up
	PhasePushing    = "pushing"    // pushing the archive to a registry
)

// Task is one freeze and everything known about it.
type Task struct {
	ID          string    `json:"id"`
	State       string    `json:"state"`
	Phase       string    `json:"phase,omitempty"`
	Container   string    `json:"container"`              // as the caller named it
	ContainerID string    `json:"container_id,omitempty"` // full id
	Owner       string    `json:"owner"`                  // user name
	OwnerUID    int       `json:"owner_uid"`
	Requester   int       `json:"requester_uid"`
	Node        string    `json:"node"`
	Job         string    `json:"job,omitempty"`
	Image       string    `json:"image"` // name:tag inside the archive
	BaseImage   string    `json:"base_image,omitempty"`
	ImageID     string    `json:"image_id,omitempty"` // the committed image (removed unless kept)
	Warnings    []string  `json:"warnings,omitempty"`
	Error       string    `json:"error,omitempty"`
	Archive     *Archive  `json:"archive,omitempty"`
	Progress    Progress  `json:"progress"`
	Created     time.Time `json:"created"`
	Started     time.Time `json:"started,omitzero"`
	Finished    time.Time `json:"finished,omitzero"`
	Durations   Durations `json:"durations,omitzero"`

	// Trigger says why the freeze started: "" asked for, "epilog" its
	// Slurm job ended.
	Trigger string `json:"trigger,omitempty"`
	// Push is set when the freeze was asked to push; a failed push leaves
	// the task succeeded (the archive is there) with Push.State failed.
	Push *PushStatus `json:"push,omitempty"`

	// Method is how the freeze was made: "direct" (the archive written
	// from the container's storage) or "commit" (podman commit, then the
	// image exported), with Warnings saying why it fell back.
	Method string `json:"method,omitempty"`
	// Exclusions says what the freeze left out of the archive.
	Exclusions *Exclusions `json:"exclusions,omitempty"`
	// Before are the commands run in the session before it was read.
	Before []CommandResult `json:"before,omitempty"`

	// Format is what the freeze writes (FormatArchive, FormatStore,
	// FormatBoth); Store is the image it wrote into the layer store.
	Format string      `json:"format,omitempty"`
	Store  *StoreImage `json:"store,omitempty"`
}

// Freeze methods (Task.Method, Sidecar.Method).
const (
	MethodDirect = "direct"
	MethodCommit = "commit"
)

// Done reports whether the task reached a final state.
func (t *Task) Done() bool { return t.State == StateSucceeded || t.State == StateFailed }

// Archive describes the file a freeze wrote.
type Archive struct {
	Path    string `json:"path"`
	Sidecar string `json:"sidecar,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Size    int64  `json:"size,omitempty"`
	// Uncompressed is the size of the docker-archive stream before gzip.
	Uncompressed int64 `json:"uncompressed,omitempty"`
}

// Progress is how far a running task got.
type Progress struct {
	// BytesRead counts uncompressed docker-archive bytes produced so far.
	BytesRead int64 `json:"bytes_read"`
	// BytesWritten counts compressed bytes written to the archive so far.
	BytesWritten int64 `json:"bytes_written"`
	// BytesTotal is BytesRead at the end: exact from a freeze's first
	// second on the direct path (an estimate, the image size, on the
	// commit path); 0 while unknown.
	BytesTotal int64 `json:"bytes_total,omitempty"`
	// SecondsLeft estimates the time to the end of the archive, from the
	// pace so far; 0 while unknown.
	SecondsLeft float64 `json:"seconds_left,omitempty"`
}

// Durations of the phases, in seconds.
type Durations struct {
	Commit float64 `json:"commit,omitempty"`
	Export float64 `json:"export,omitempty"`
	Total  float64 `json:"total,omitempty"`
	Push   float64 `json:"push,omitempty"`
}

// Session is one of the caller's containers, as the sessions route lists it.
type Session struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Image   string    `json:"image"`
	State   string    `json:"state"`
	Created time.Time `json:"created"`
	Owner   string    `json:"owner"`
	Node    string    `json:"node"`
	Job     string    `json:"job,omitempty"`
	// Task is the id of a freeze of this container that is still running.
	Task string `json:"task,omitempty"`
	// LastTask is the newest freeze of this container on this node
	// (queued, running with its live progress, or finished with its
	// archive or error), whoever started it: a page that polls the
	// sessions shows how the last freeze ended, even after a reload.
	LastTask *Task `json:"last_task,omitempty"`
}

// Sidecar is the .json file written next to each archive.
type Sidecar struct {
	Archive         string    `json:"archive"` // file name, relative to the sidecar
	SHA256          string    `json:"sha256"`
	Size            int64     `json:"size"`
	Image           string    `json:"image"`
	ImageID         string    `json:"image_id"`
	SourceContainer string    `json:"source_container"`
	SourceID        string    `json:"source_container_id"`
	BaseImage       string    `json:"base_image,omitempty"`
	Node            string    `json:"node"`
	User            string    `json:"user"`
	UID             int       `json:"uid"`
	Job             string    `json:"job,omitempty"`
	Task            string    `json:"task"`
	ContainerState  string    `json:"container_state,omitempty"`
	Created         time.Time `json:"created"`

	// ContainerExit is the container's exit code when it had exited.
	ContainerExit *int `json:"container_exit_code,omitempty"`
	// JobExit is the Slurm job's "EXIT:SIGNAL" for freezes at job end.
	JobExit string `json:"job_exit,omitempty"`
	// Trigger: "" asked for, "epilog" its Slurm job ended.
	Trigger string `json:"trigger,omitempty"`
	// Pushes lists where the archive was pushed, oldest first.
	Pushes []PushRecord `json:"pushes,omitempty"`

	// Exclusions says what a freeze left out of the archive.
	Exclusions *Exclusions `json:"exclusions,omitempty"`
	// Method is how the archive was made: "direct" (read from the
	// container's storage) or "commit" (through podman commit).
	Method string `json:"method,omitempty"`
	// LastUsed is when the archive was last restored.
	LastUsed time.Time `json:"last_used,omitzero"`

	// Format is FormatStore for an image in a layer store (whose sidecar
	// is the baicommit.json inside its layout, Archive the layout's
	// directory name, SHA256 the hex of its manifest's digest and Size
	// what its blobs take), empty for an archive.
	Format string `json:"format,omitempty"`
	// Written is what the freeze wrote into the layer store for it (the
	// rest was there already).
	Written int64 `json:"written,omitempty"`
}

// Exclusions is what a freeze left out of the container's changes.
type Exclusions struct {
	// Placeholders are the empty files and directories the runtime made
	// only to mount something over (bind mounts, volumes, devices,
	// /etc/hosts …), as container paths.
	Placeholders []string `json:"placeholders,omitempty"`
	// Patterns are the site's exclusion patterns, UserPatterns the
	// caller's (--exclude and their exclude file); Entries and Bytes are
	// what they removed.
	Patterns     []string `json:"patterns,omitempty"`
	UserPatterns []string `json:"user_patterns,omitempty"`
	Entries      int      `json:"entries,omitempty"`
	Bytes        int64    `json:"bytes,omitempty"`
}

// ArchiveEntry is one archive found through its sidecar.
type ArchiveEntry struct {
	// Path is the archive's full path, SidecarFile its sidecar's.
	Path        string `json:"path"`
	SidecarFile string `json:"sidecar"`
	Sidecar
}

// LastPush is where the archive was pushed last, nil if never.
func (e *ArchiveEntry) LastPush() *PushRecord {
	if len(e.Pushes) == 0 {
		return nil
	}
	return &e.Pushes[len(e.Pushes)-1]
}

// ArchiveList answers RouteArchives.
type ArchiveList struct {
	// Dir is the directory that was searched (the caller's save
	// directory); it may not exist yet, and then Archives is empty.
	Dir      string         `json:"dir"`
	Archives []ArchiveEntry `json:"archives"`
	// Warnings name sidecars that were skipped, and a list cut short.
	Warnings []string `json:"warnings,omitempty"`
}

// VersionInfo answers the version route.
type VersionInfo struct {
	Version    string `json:"version"`
	API        string `json:"api"`
	Node       string `json:"node"`
	Running    int    `json:"running_tasks"`
	CallerUID  int    `json:"caller_uid"`
	CallerName string `json:"caller_name,omitempty"`

	// SaveDir is the caller's directory of archives on the shared
	// filesystem (the part of save_path that depends only on the user),
	// where `baicommit list` looks for sidecars.
	SaveDir string `json:"save_dir,omitempty"`
	// StoreDir is the caller's layer store, where `baicommit list`,
	// restore, push, export, rm and prune find store images.
	StoreDir string `json:"store_dir,omitempty"`
	// Format is the site's default format, Formats those a freeze may
	// ask for.
	Format  string   `json:"format,omitempty"`
	Formats []string `json:"formats,omitempty"`
}

// NodeStatus is one node as the manager sees it.
type NodeStatus struct {
	Node string `json:"node"`
	// Reachable says the node's agent answered; Error says why not.
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	Version   string `json:"version,omitempty"`
	Running   int    `json:"running_tasks"`
	// LatencyMS is how long the agent took to answer, in milliseconds.
	LatencyMS float64 `json:"latency_ms"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	// Message says what went wrong and what to do about it.
	Message string `json:"error"`
	// Task names the running task when a freeze of the same container is
	// already in progress (HTTP 409).
	Task string `json:"task,omitempty"`
}

var (
	jobIDRE   = regexp.MustCompile(`^[0-9]{1,12}(_[0-9]{1,9})?$`)
	jobExitRE = regexp.MustCompile(`^[0-9]{1,3}:[0-9]{1,3}$`)
)

// ValidJobID reports whether s is a Slurm job id: digits, or JOB_TASK for
// an array job's task.
func ValidJobID(s string) bool { return jobIDRE.MatchString(s) }

// ValidJobExit reports whether s is a job's exit as Slurm writes it in
// SLURM_JOB_EXIT_CODE2: "EXIT:SIGNAL".
func ValidJobExit(s string) bool { return jobExitRE.MatchString(s) }
