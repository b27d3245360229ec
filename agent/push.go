package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/registry"
)

// checkPush validates a push request of c's for u's session and returns
// the task's push status. Error messages never quote the credentials.
//
// The push runs in a helper as u, who can read that process's memory: c's
// own password is refused there when c is someone else (root, an admin).
func checkPush(p *api.PushRequest, c Caller, u *identity.User) (*api.PushStatus, error) {
	ref, err := registry.ParseRef(p.Ref)
	if err != nil {
		return nil, userErr(KindInvalid, "--push: %v", err)
	}
	if p.Creds != "" {
		if _, err := registry.ParseCreds(p.Creds); err != nil {
			return nil, userErr(KindInvalid, "--creds: %v", err)
		}
		if c.UID != u.UID {
			return nil, userErr(KindForbidden, "--creds cannot be used for the session of %s: the push runs as %s, who could read them from it. Freeze without --push and push the archive yourself (`baicommit push ARCHIVE REF`), or let %s push with their own credentials", u.Name, u.Name, u.Name)
		}
	}
	if p.AuthFile != "" && (!filepath.IsAbs(p.AuthFile) || filepath.Clean(p.AuthFile) != p.AuthFile || len(p.AuthFile) > 4096 || strings.ContainsRune(p.AuthFile, 0)) {
		return nil, userErr(KindInvalid, "--authfile %q: give an absolute, clean path", p.AuthFile)
	}
	return &api.PushStatus{Ref: ref.String(), State: api.PushPending}, nil
}

// push pushes the task's finished archive as its owner: a helper running
// as the owner reads the owner's auth files (HOME and XDG_RUNTIME_DIR are
// the owner's) or gets req.Creds on its standard input. A failed push
// leaves the archive and the task succeeded, with the push marked failed.
func (a *Agent) push(ctx context.Context, r *taskstore.Record, u *identity.User, req api.PushRequest) {
	t0 := time.Now()
	defer a.update(r, func(r *taskstore.Record) { r.Durations.Push = time.Since(t0).Seconds() })
	a.update(r, func(r *taskstore.Record) {
		r.Phase = api.PhasePushing
		r.Push.State = api.PushRunning
	})
	// The normalized destination, as the task shows it.
	req.Ref = r.Push.Ref
	spec := messages.Spec{Op: messages.OpPush, Root: r.Root, Dir: r.Dir, Push: &req}
	if r.Archive != nil {
		spec.Name, spec.SidecarName = filepath.Base(r.Archive.Path), filepath.Base(r.Archive.Sidecar)
		// The helper pushes the archive only if it is still the one the
		// freeze wrote.
		spec.Sidecar = api.Sidecar{SHA256: r.Archive.SHA256, Size: r.Archive.Size}
	} else if r.Store != nil {
		// Straight from the layer store (whose blobs are checked against
		// their digests as they are read).
		spec.LayerStore = &messages.LayerStore{Root: r.StoreRoot, Dir: r.StoreDir, Image: filepath.Base(r.Store.Path)}
	}
	done, err := a.runTaskHelper(ctx, u, spec, r, func(ev messages.Event) {
		r.Push.Sent, r.Push.Total = ev.Read, ev.Size
	})
	if err == nil && done.Digest == "" {
		err = fmt.Errorf("the push helper ended without reporting a digest")
	}
	if err != nil {
		// The helper's own errors are masked already; what it printed
		// on its way down passes the same mask here.
		if auth, aerr := registry.ParseCreds(req.Creds); aerr == nil {
			err = registry.Redact(err, auth.Password)
		}
		msg := err.Error()
		switch {
		case a.ctx.Err() != nil:
			msg = "the agent was stopped while pushing; the archive is complete. Push it with `baicommit push ARCHIVE " + r.Push.Ref + "`."
		case ctx.Err() != nil:
			msg = fmt.Sprintf("the push did not end within this node's task_timeout (%s); the archive is complete. Push it with `baicommit push ARCHIVE %s`.", a.cfg.TaskTimeout.Duration, r.Push.Ref)
		}
		a.update(r, func(r *taskstore.Record) {
			r.Push.State, r.Push.Error = api.PushFailed, msg
		})
		a.log.Warn("push failed", "task", r.ID, "owner", r.Owner, "ref", r.Push.Ref, "err", msg)
		return
	}
	a.update(r, func(r *taskstore.Record) {
		r.Push.State, r.Push.Digest = api.PushSucceeded, done.Digest
		if r.Push.Total > 0 {
			r.Push.Sent = r.Push.Total
		}
	})
	a.log.Info("push succeeded", "task", r.ID, "owner", r.Owner, "ref", r.Push.Ref, "digest", done.Digest)
}
