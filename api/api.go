// Package api defines the wire types of the baicommit agent's HTTP/JSON API
// (version 1). The agent serves them under /v1 on its unix socket; the
// client package and the CLI consume them.
package api

import "time"

// Version is the API version prefix every route lives under.
const Version = "v1"

// Routes of the agent API, relative to the server root.
const (
	RouteFreezes  = "/v1/freezes"  // POST: start a freeze (FreezeRequest → Task, 202)
	RouteTasks    = "/v1/tasks"    // GET: the caller's tasks ([]Task, newest first)
	RouteTask     = "/v1/tasks/"   // GET /v1/tasks/{id}: one task
	RouteSessions = "/v1/sessions" // GET: the caller's containers ([]Session)
	RouteVersion  = "/v1/version"  // GET: VersionInfo
)

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
	// Push, when set, pushes the frozen image to a registry once the
	// archive is written.
	Push *PushRequest `json:"push,omitempty"`
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
	PhaseCommitting = "committing" // podman commit
	PhaseExporting  = "exporting"  // reading the image, compressing, writing
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

	// Push is set when the freeze was asked to push; a failed push leaves
	// the task succeeded (the archive is there) with Push.State failed.
	Push *PushStatus `json:"push,omitempty"`
}

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
	// BytesTotal estimates BytesRead at the end (the image size), 0 if unknown.
	BytesTotal int64 `json:"bytes_total,omitempty"`
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

	// Pushes lists where the archive was pushed, oldest first.
	Pushes []PushRecord `json:"pushes,omitempty"`
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
}

// Error is the body of every non-2xx answer.
type Error struct {
	// Message says what went wrong and what to do about it.
	Message string `json:"error"`
	// Task names the running task when a freeze of the same container is
	// already in progress (HTTP 409).
	Task string `json:"task,omitempty"`
}
