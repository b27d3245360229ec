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
)

// Command is the hidden sub-command of baicommit-agent that runs a helper.
const Command = "as-owner"

// Operations a helper can be asked for.
const (
	// OpArchiveImage writes an archive of a committed image, and its
	// sidecar, below the owner's save directory.
	OpArchiveImage = "archive-image"
	// OpRemove removes leftovers of a task (its temporary file).
	OpRemove = "remove"
	// OpPush pushes a finished archive to a registry and records the push
	// in its sidecar.
	OpPush = "push"
	// OpList lists the owner's archives below Dir through their sidecars.
	OpList = "list"
	// OpPrepareDir makes Dir below Root (directories of mode Mode's
	// safefile.DirModeFor), checking every directory on the way as the
	// owner sees it on the host: it runs before each operation in the
	// owner's user namespace, where root's directories cannot be told
	// from another user's.
	OpPrepareDir = "prepare-dir"
)

// Ops are all operations, for the helper's usage.
var Ops = []string{OpArchiveImage, OpRemove, OpPush, OpList, OpPrepareDir}

// InNamespace reports whether op runs inside the owner's rootless user
// namespace (to read their image store) rather than with their
// credentials alone.
func InNamespace(op string) bool { return op == OpArchiveImage }

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
