// Package messages is everything that crosses the boundary between the
// root agent (package agent) and the helper it runs as a session's owner
// (package asowner), as rootlesskit keeps pkg/messages between its parent
// and child: the agent starts its own binary again as
//
//	baicommit-agent as-owner OP
//
// with the owner's credentials (and, to read their image store, inside
// their rootless user namespace), writes one Spec as JSON on the helper's
// standard input, and reads Events, one JSON object per line, from its
// standard output until it exits. Nothing else passes: no command-line
// argument but OP, no environment but the owner's own.
package messages

import (
	"bufio"
	"encoding/json"
	"io"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/policy"
)

// Command is the hidden sub-command of baicommit-agent that runs a helper.
const Command = "as-owner"

// Operations a helper can be asked for.
const (
	// OpFreeze writes an archive of a container straight from the owner's
	// containers-storage (its image's layers and its own changes), and its
	// sidecar, below the owner's save directory.
	OpFreeze = "freeze"
	// OpArchiveImage writes an archive of a committed image, and its
	// sidecar, below the owner's save directory (the commit path).
	OpArchiveImage = "archive-image"
	// OpRemove removes leftovers of a task (its temporary file).
	OpRemove = "remove"
	// OpPush pushes a finished archive to a registry and records the push
	// in its sidecar.
	OpPush = "push"
	// OpList lists the owner's archives below Dir through their sidecars.
	OpList = "list"
	// OpUsage sums the owner's archives below Dir, and the project
	// directories of Groups on the way to Dest.
	OpUsage = "usage"
	// OpPrune applies Retention, and the owner's own rules, to the owner's
	// archives below Dir and their images in LayerStore.
	OpPrune = "prune"
	// OpRemoveArchives removes the owner's archives Paths names.
	OpRemoveArchives = "remove-archives"
	// OpPrepareDir makes Dir below Root (directories of mode Mode's
	// safefile.DirModeFor), checking every directory on the way as the
	// owner sees it on the host: it runs before each operation in the
	// owner's user namespace, where root's directories cannot be told
	// from another user's.
	OpPrepareDir = "prepare-dir"
	// OpKill ends process PID with the owner's rights alone: a command run
	// before a freeze that did not end in time, whose pid the owner's
	// Podman reported (and so could be anyone's).
	OpKill = "kill"
)

// Ops are all operations, for the helper's usage.
var Ops = []string{OpFreeze, OpArchiveImage, OpRemove, OpPush, OpList, OpUsage, OpPrune, OpRemoveArchives, OpPrepareDir, OpKill}

// InNamespace reports whether op runs inside the owner's rootless user
// namespace (to read their image store) rather than with their
// credentials alone.
func InNamespace(op string) bool { return op == OpFreeze || op == OpArchiveImage }

// MaxSpec bounds what a helper reads of its spec.
const MaxSpec = 1 << 20

// Spec is what the agent asks of one helper run.
type Spec struct {
	Op string `json:"op"`
	// Root is the save root the agent's configuration allows; Dir lies
	// below it and is created (without following links) if missing.
	Root string `json:"root"`
	Dir  string `json:"dir"`
	// Name is the final archive file name, Temp the temporary one.
	Name string `json:"name,omitempty"`
	Temp string `json:"temp"`
	// SidecarName is the final name of the .json sidecar.
	SidecarName string `json:"sidecar_name,omitempty"`

	ImageID string `json:"image_id,omitempty"`
	// RepoTag is the name:tag recorded in the archive's RepoTags.
	RepoTag string `json:"repo_tag,omitempty"`
	Store   Store  `json:"store"`
	// ScrubEnv lists glob patterns (case-insensitive); matching variables
	// are removed from the image config written to the archive.
	ScrubEnv []string `json:"scrub_env,omitempty"`
	Mode     uint32   `json:"mode,omitempty"`
	Level    int      `json:"level,omitempty"`
	// Sidecar is completed with the digest and size, then written.
	Sidecar api.Sidecar `json:"sidecar"`

	// Push says where OpPush pushes the archive Name, and how. It reaches
	// the helper only on its standard input (a pipe), never on its
	// command line or in its environment, because it may hold a password.
	Push *api.PushRequest `json:"push,omitempty"`

	// Limit is how many archives OpList reports at most (0: no limit);
	// it stops there and says so in a warning.
	Limit int `json:"limit,omitempty"`

	// ContainerID is the container OpFreeze freezes, and Container what
	// its Podman says of it.
	ContainerID string     `json:"container_id,omitempty"`
	Container   *Container `json:"container,omitempty"`
	// Exclude are glob patterns of container paths left out of OpFreeze's
	// archive, with everything below them (the site's).
	Exclude []string `json:"exclude,omitempty"`
	// Labels are added to the image config (provenance).
	Labels map[string]string `json:"labels,omitempty"`
	// Comment is the history entry's comment.
	Comment string `json:"comment,omitempty"`
	// UserExclude are the caller's exclusion patterns (--exclude); the
	// helper adds those of the owner's exclude file.
	UserExclude []string `json:"user_exclude,omitempty"`
	// Quota is what OpFreeze checks, after listing and before writing,
	// with the usage OpUsage found just before; nil: no quota.
	// OpArchiveImage checks it with SizeHint, the committed image's size.
	Quota    *QuotaCheck `json:"quota,omitempty"`
	SizeHint int64       `json:"size_hint,omitempty"`

	// Dest is the destination a freeze will write to (OpUsage), Groups
	// the group quotas that may apply there.
	Dest   string       `json:"dest,omitempty"`
	Groups []GroupQuota `json:"groups,omitempty"`
	// Retention are the site's rules for OpPrune.
	Retention *policy.Retention `json:"retention,omitempty"`
	DryRun    bool              `json:"dry_run,omitempty"`
	// Paths are the archives OpRemoveArchives removes.
	Paths []string `json:"paths,omitempty"`
	// PID is the process OpKill ends.
	PID int `json:"pid,omitempty"`

	// Format is what OpFreeze writes: api.FormatArchive (empty), the
	// archive Name below Dir; api.FormatStore, an image into LayerStore;
	// or api.FormatBoth.
	Format string `json:"format,omitempty"`
	// LayerStore is the layer store OpFreeze writes into, OpPush pushes
	// from, OpRemove cleans up after a task in, OpList and OpUsage count
	// and OpPrune applies retention to.
	LayerStore *LayerStore `json:"layer_store,omitempty"`
}

// GroupQuota is a group's quota, by name and gid as the host knows it.
type GroupQuota struct {
	Name  string    `json:"name"`
	GID   int       `json:"gid"`
	Quota api.Quota `json:"quota"`
}

// QuotaCheck is what a freeze may add: the limits and the usage so far.
type QuotaCheck struct {
	Quotas api.Quotas `json:"quotas"`
	Usage  api.Usage  `json:"usage"`
}

// LayerStore names a layer store and what a helper does in it.
type LayerStore struct {
	// Root is the save root the store lies below, Dir its directory.
	Root string `json:"root"`
	Dir  string `json:"dir"`
	// Image is the name of the image (a freeze's, or the one to push).
	Image string `json:"image,omitempty"`
	// Token names a freeze's hold and temporary files: unique to node
	// and task.
	Token string `json:"token,omitempty"`
	// Level is the gzip level of the new layer.
	Level int `json:"level,omitempty"`
}

// Container is what the owner's Podman says of a container, for the image
// config a freeze writes, as libpod's commit maps it: the base image's
// config with these set.
type Container struct {
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty"`
	Env        []string          `json:"env,omitempty"`
	WorkingDir string            `json:"working_dir,omitempty"`
	User       string            `json:"user,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	// ExposedPorts are "PORT/PROTO" from its port mappings and exposed
	// ports.
	ExposedPorts []string `json:"exposed_ports,omitempty"`
	// Volumes are the destinations of its anonymous volumes.
	Volumes []string `json:"volumes,omitempty"`
	// Mounts are the destinations of everything mounted into it (binds,
	// volumes, devices' files), whose placeholders stay out.
	Mounts []string `json:"mounts,omitempty"`
}

// Store says which containers-storage the owner's Podman uses, as its
// info endpoint reports it, so the helper opens exactly the same one.
type Store struct {
	GraphRoot string   `json:"graph_root"`
	RunRoot   string   `json:"run_root"`
	Driver    string   `json:"driver"`
	Options   []string `json:"options,omitempty"`
}

// Event kinds.
const (
	EventProgress = "progress"
	EventWarning  = "warning"
	EventDone     = "done"
	EventError    = "error"
	// EventArchive is one archive OpList found, in Archive.
	EventArchive = "archive"
)

// Event is one line a helper reports.
type Event struct {
	Event   string `json:"event"`
	Read    int64  `json:"read,omitempty"`    // uncompressed bytes
	Written int64  `json:"written,omitempty"` // compressed bytes
	Message string `json:"message,omitempty"`
	// NoSpace marks an error caused by a full filesystem or quota.
	NoSpace bool `json:"no_space,omitempty"`
	// Denied marks an error caused by missing permission.
	Denied bool   `json:"denied,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Size   int64  `json:"size,omitempty"`
	// Digest is the manifest digest a push left in the registry.
	Digest string `json:"digest,omitempty"`
	// Archive is the entry of an EventArchive, one per line: a long list
	// never has to fit in one line.
	Archive *api.ArchiveEntry `json:"archive,omitempty"`

	// Total is the uncompressed size of the whole stream, known before
	// its first byte is written (OpFreeze's progress events).
	Total int64 `json:"total,omitempty"`
	// Unsupported marks an error event of OpFreeze that nothing was
	// written for because the store's setup is not one it can read: the
	// agent falls back to the commit path, saying why (Message).
	Unsupported bool `json:"unsupported,omitempty"`
	// ImageID is the config digest of the image OpFreeze wrote.
	ImageID string `json:"image_id,omitempty"`
	// Exclusions says what OpFreeze left out.
	Exclusions *api.Exclusions `json:"exclusions,omitempty"`
	// The results of OpUsage, OpPrune and OpRemoveArchives, in their done
	// event (OpPrune also reports each removal as an EventArchive).
	Usage  *api.Usage        `json:"usage,omitempty"`
	Prune  *api.PruneResult  `json:"prune,omitempty"`
	Remove *api.RemoveResult `json:"remove,omitempty"`
	// QuotaExceeded marks an error event: the freeze would pass a quota,
	// and nothing was written.
	QuotaExceeded bool `json:"quota_exceeded,omitempty"`
	// Store is the image OpFreeze wrote into the layer store.
	Store *api.StoreImage `json:"store,omitempty"`
}

// Encoder returns an emit function writing events as JSON lines to w.
func Encoder(w io.Writer) func(Event) {
	enc := json.NewEncoder(w)
	return func(e Event) { _ = enc.Encode(e) }
}

// MaxEvent bounds one event line; the helper runs as the user, who could
// make it print anything.
const MaxEvent = 1 << 20

// Decode reads events from r, one per line, and passes each to f. Lines
// that are not events are skipped; a line longer than MaxEvent ends the
// reading with an error, after r is drained so the writer never blocks.
func Decode(r io.Reader, f func(Event)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxEvent)
	for sc.Scan() {
		var ev Event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		f(ev)
	}
	err := sc.Err()
	_, _ = io.Copy(io.Discard, r)
	return err
}
