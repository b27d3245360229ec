// Package asowner is everything of a freeze that runs as the session's
// owner: the helper the root agent starts as
//
//	baicommit-agent as-owner OP
//
// with the owner's uid, gid and groups (and, to read their image store,
// inside their rootless user namespace). It reads the owner's
// containers-storage, writes archives and sidecars onto the shared
// filesystem (package safefile), pushes archives to registries with the
// owner's credentials, lists and removes the owner's files. Running as the
// owner gives archives the right owner, works with NFS root_squash, and
// means no write by root can be redirected by a link the user planted. The
// agent talks to it only through package messages.
package asowner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"go.podman.io/storage/pkg/unshare"
	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/agent/messages"
)

// Main is the entry point of a helper process started as
// `baicommit-agent as-owner OP`: it reads a Spec from standard input, runs
// it and reports Events on standard output. It returns the process exit
// code.
func Main(op string) int {
	emit := messages.Encoder(os.Stdout)
	if op == messages.OpPush {
		// A push's spec may carry a password: no process of the owner's
		// may read this one's memory (ptrace, /proc/PID/mem) or a core
		// dump of it.
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			emit(messages.Event{Event: messages.EventError, Message: fmt.Sprintf("make the push helper undumpable: %v", err)})
			return 2
		}
	}
	if messages.InNamespace(op) {
		// The agent normally starts the helper inside the owner's rootless
		// user namespace already, and then this returns at once. Started
		// as the plain user, it enters one (as `podman unshare` does): it
		// re-runs this binary inside it, forwarding stdio, which is why it
		// comes before the spec is read from standard input.
		unshare.MaybeReexecUsingUserNamespace(false)
	}
	var spec messages.Spec
	if err := json.NewDecoder(io.LimitReader(os.Stdin, messages.MaxSpec)).Decode(&spec); err != nil {
		emit(messages.Event{Event: messages.EventError, Message: fmt.Sprintf("read helper spec: %v", err)})
		return 2
	}
	if spec.Op != op {
		emit(messages.Event{Event: messages.EventError, Message: fmt.Sprintf("helper started for %q but asked for %q", op, spec.Op)})
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := Run(ctx, spec, emit); err != nil {
		var u *unsupported
		var q *quotaError
		emit(messages.Event{Event: messages.EventError, Message: err.Error(), NoSpace: NoSpace(err),
			Denied: errors.Is(err, fs.ErrPermission), Unsupported: errors.As(err, &u), QuotaExceeded: errors.As(err, &q)})
		return 1
	}
	return 0
}

// Run performs spec and reports events through emit. It returns the error
// that made it fail, after removing whatever it had written.
func Run(ctx context.Context, spec messages.Spec, emit func(messages.Event)) error {
	switch spec.Op {
	case messages.OpRemove:
		return remove(spec)
	case messages.OpFreeze:
		return freeze(ctx, spec, emit)
	case messages.OpArchiveImage:
		return archiveImage(ctx, spec, emit)
	case messages.OpPush:
		return push(ctx, spec, emit)
	case messages.OpList:
		return list(ctx, spec, emit)
	case messages.OpUsage:
		return usage(ctx, spec, emit)
	case messages.OpPrune:
		return prune(ctx, spec, emit)
	case messages.OpRemoveArchives:
		return removeArchives(ctx, spec, emit)
	case messages.OpPrepareDir:
		return prepareDir(spec)
	case messages.OpKill:
		return kill(spec)
	}
	return fmt.Errorf("unknown operation %q", spec.Op)
}

// NoSpace reports whether err comes from a full filesystem or quota.
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
