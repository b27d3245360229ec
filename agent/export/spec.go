// Package export is the part of a freeze that runs as the archive's owner.
//
// The agent (root) starts its own binary again with the owner's uid, gid
// and groups and hands it a Spec on standard input; the helper enters the
// owner's rootless user namespace, reads the committed image straight out
// of the owner's containers-storage, streams it as a docker-archive through
// a parallel gzip writer that hashes the bytes it writes, and moves the
// result to its final name on the shared filesystem. It reports Events as
// JSON lines on standard output. Running as the owner gives the archive the
// right owner, works with NFS root_squash, and means no root write can be
// redirected by a link the user planted.
package export

import "github.com/baicommit/baicommit/api"

// Operations a helper can be asked for.
const (
	OpExport = "export" // write an archive and its sidecar
	OpRemove = "remove" // remove leftovers of a task (temporary files)
	OpPush   = "push"   // push a finished archive to a registry, record it in the sidecar
	OpList   = "list"   // list the user's archives below Dir through their sidecars
)

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
}
