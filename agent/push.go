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

// checkPush validates a push request and returns the task's push status.
// Error messages never quote the credentials.
func checkPush(p *api.PushRequest) (*api.PushStatus, error) {
	ref, err := registry.ParseRef(p.Ref)
	if err != nil {
		return nil, userErr(KindInvalid, "--push: %v", err)
	}
	if p.Creds != "" {
		if _, err := registry.ParseCreds(p.Creds); err != nil {
			return nil, userErr(KindInvalid, "--creds: %v", err)
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
	} else if r.Store != nil {
		// Straight from the layer store.
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
		if ctx.Err() != nil {
			msg = "the agent was stopped while pushing; the archive is complete. Push it with `baicommit push ARCHIVE " + r.Push.Ref + "`."
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
