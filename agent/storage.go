package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/agent/podman"
	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/httperr"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/policy"
)

// The storage policy: what a freeze runs first and leaves out, quotas
// checked before anything is written, retention after each freeze, and
// the routes that show and clean up a user's archives.

// checkStorageRequest checks what a freeze request asks of the storage
// policy: its commands parse, its patterns are globs, and quotas come only
// from the manager (or root).
func (a *Agent) checkStorageRequest(c Caller, req *api.FreezeRequest) error {
	for _, b := range req.Before {
		if _, err := policy.Command("--before", b); err != nil {
			return userErr(KindInvalid, "%v", err)
		}
	}
	if err := policy.ValidExclude("--exclude", req.Exclude); err != nil {
		return userErr(KindInvalid, "%v", err)
	}
	if req.Quotas != nil && !c.Relayed && c.UID != 0 {
		return userErr(KindForbidden, "quotas are set by the site (the manager or the agent's configuration), not per request")
	}
	return nil
}

// quotas are the limits of task r: the manager's, or the agent's own.
func (a *Agent) quotas(q *api.Quotas) api.Quotas {
	if q != nil {
		return *q
	}
	return *a.cfg.APIQuotas()
}

func anyLimit(q api.Quotas) bool {
	return q.User != (api.Quota{}) || len(q.Groups) > 0 || q.MaxFreezeSize > 0
}

// groupQuotas are q's group quotas with the groups' ids.
func groupQuotas(q api.Quotas) []messages.GroupQuota {
	var out []messages.GroupQuota
	for name, gq := range q.Groups {
		g, err := user.LookupGroup(name)
		if err != nil {
			continue
		}
		gid, err := strconv.Atoi(g.Gid)
		if err != nil {
			continue
		}
		out = append(out, messages.GroupQuota{Name: name, GID: gid, Quota: gq})
	}
	return out
}

// quotaCheck is what the freeze of r may add: the limits and what the
// owner keeps now, as a helper running as them counts it. Nil when the
// site sets no limit.
func (a *Agent) quotaCheck(ctx context.Context, u *identity.User, r *taskstore.Record) (*messages.QuotaCheck, error) {
	q := a.quotas(r.Quotas)
	if !anyLimit(q) {
		return nil, nil
	}
	usage, err := a.usageOf(ctx, u, r.Root, r.UserDir, r.Dir, q, userStore(r))
	if err != nil {
		return nil, fmt.Errorf("count what %s keeps below %s for the quota: %w", u.Name, r.UserDir, err)
	}
	return &messages.QuotaCheck{Quotas: q, Usage: *usage}, nil
}

// usageOf runs the usage helper as u.
func (a *Agent) usageOf(ctx context.Context, u *identity.User, root, dir, dest string, q api.Quotas, store *messages.LayerStore) (*api.Usage, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	var out *api.Usage
	spec := messages.Spec{Op: messages.OpUsage, Root: root, Dir: dir, Dest: dest, Groups: groupQuotas(q), LayerStore: store}
	err := a.helpers.Run(ctx, u, spec, func(ev messages.Event) {
		if ev.Event == messages.EventDone && ev.Usage != nil {
			out = ev.Usage
		}
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, errors.New("the usage helper ended without an answer")
	}
	if q.User != (api.Quota{}) {
		uq := q.User
		out.Quota = &uq
	}
	return out, nil
}

// runBefore runs the site's before_freeze commands and then the user's
// in the running container of r, each within before_freeze_timeout, and
// records how each went. A failure is a warning, or ends the freeze when
// the site says before_freeze_failure = "abort".
func (a *Agent) runBefore(ctx context.Context, u *identity.User, conn Podman, r *taskstore.Record, state string) error {
	type command struct{ line, source string }
	var cmds []command
	for _, c := range a.cfg.BeforeFreeze {
		cmds = append(cmds, command{c, "site"})
	}
	for _, c := range r.UserBefore {
		cmds = append(cmds, command{c, "user"})
	}
	if len(cmds) == 0 {
		return nil
	}
	if state != "running" {
		a.update(r, func(r *taskstore.Record) {
			r.Warnings = append(r.Warnings, fmt.Sprintf("the container is %s, so the commands to run before the freeze were not run", state))
		})
		return nil
	}
	a.update(r, func(r *taskstore.Record) { r.Phase = api.PhaseBefore })
	for _, c := range cmds {
		argv, err := policy.Command("before_freeze command", c.line)
		res := api.CommandResult{Command: c.line, Source: c.source}
		t0 := time.Now()
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, a.cfg.BeforeFreezeTimeout.Duration)
			res.ExitCode, res.Output, err = conn.Exec(cctx, r.ContainerID, argv)
			cancel()
			var late *podman.ExecTimeoutError
			if errors.As(err, &late) && late.PID > 0 {
				a.killAsOwner(ctx, u, r, late.PID)
			}
		}
		res.Seconds = time.Since(t0).Seconds()
		var failure string
		switch {
		case errors.Is(err, podman.ErrExecTimeout):
			res.Error = fmt.Sprintf("did not end within %s and was killed", a.cfg.BeforeFreezeTimeout.Duration)
			failure = res.Error
		case err != nil:
			res.Error = err.Error()
			failure = "could not run: " + err.Error()
		case res.ExitCode != 0:
			failure = fmt.Sprintf("exited with status %d", res.ExitCode)
		}
		abort := failure != "" && a.cfg.BeforeFreezeFailure == policy.BeforeAbort
		a.update(r, func(r *taskstore.Record) {
			r.Before = append(r.Before, res)
			if failure != "" && !abort {
				r.Warnings = append(r.Warnings, fmt.Sprintf("the command %q run before the freeze %s; the session was frozen anyway", c.line, failure))
			}
		})
		a.log.Info("before-freeze command", "task", r.ID, "source", c.source, "command", c.line, "exit", res.ExitCode, "seconds", res.Seconds, "err", res.Error)
		if abort {
			return userErr(KindInvalid, "the command %q run before the freeze %s, and this site aborts a freeze then (before_freeze_failure = \"abort\"); nothing was written: see the command's output with `baicommit status --json %s`", c.line, failure, r.ID)
		}
	}
	return nil
}

// killAsOwner ends a command run before a freeze that did not end in
// time, by a helper with the owner's rights: the pid comes from their
// Podman, and root signalling it could hit anyone's process.
func (a *Agent) killAsOwner(ctx context.Context, u *identity.User, r *taskstore.Record, pid int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), listTimeout)
	defer cancel()
	if err := a.helpers.Run(ctx, u, messages.Spec{Op: messages.OpKill, PID: pid}, func(messages.Event) {}); err != nil {
		a.log.Warn("could not end a before-freeze command", "task", r.ID, "pid", pid, "err", err)
	}
}

// userStore is the owner's layer store as the freeze r placed it (nil:
// none).
func userStore(r *taskstore.Record) *messages.LayerStore {
	if r.UserStore == "" {
		return nil
	}
	return &messages.LayerStore{Root: r.UserStoreRoot, Dir: r.UserStore}
}

// applyRetention applies the site's retention rules and the owner's own
// to the owner's archives and layer store images once a freeze of theirs
// succeeded, logging each removal.
func (a *Agent) applyRetention(ctx context.Context, u *identity.User, r *taskstore.Record) {
	if r.UserDir == "" {
		return
	}
	_, err := a.prune(ctx, u, r.Root, r.UserDir, userStore(r), false)
	if err != nil {
		a.update(r, func(r *taskstore.Record) {
			r.Warnings = append(r.Warnings, "the archive is complete, but applying the retention rules failed: "+err.Error())
		})
	}
}

// prune runs the prune helper as u below dir and in their layer store
// (when not nil).
func (a *Agent) prune(ctx context.Context, u *identity.User, root, dir string, store *messages.LayerStore, dryRun bool) (*api.PruneResult, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	ret := a.cfg.Retention
	var out *api.PruneResult
	spec := messages.Spec{Op: messages.OpPrune, Root: root, Dir: dir, Retention: &ret, DryRun: dryRun, LayerStore: store}
	err := a.helpers.Run(ctx, u, spec, func(ev messages.Event) {
		switch {
		case ev.Event == messages.EventArchive && ev.Archive != nil && !dryRun:
			a.log.Info("archive removed by the retention rules", "user", u.Name, "archive", ev.Archive.Path, "container", ev.Archive.SourceContainer, "bytes", ev.Size)
		case ev.Event == messages.EventDone && ev.Prune != nil:
			out = ev.Prune
		}
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, errors.New("the prune helper ended without an answer")
	}
	return out, nil
}

// storageCaller resolves the user whose archives a storage route acts on
// (the caller, or for an admin the user named), their save directory and
// the quotas that apply.
func (a *Agent) storageCaller(r *http.Request) (*identity.User, string, string, api.Quotas, error) {
	u, dir, root, q, _, err := a.storageTarget(r)
	return u, dir, root, q, err
}

// storageTarget is storageCaller with the user's layer store (nil when it
// cannot be placed).
func (a *Agent) storageTarget(r *http.Request) (*identity.User, string, string, api.Quotas, *messages.LayerStore, error) {
	c := caller(r)
	q := r.URL.Query()
	target := c
	if name := q.Get(api.QueryUser); name != "" {
		u, err := a.owner(c, name)
		if err != nil {
			return nil, "", "", api.Quotas{}, nil, err
		}
		target = identity.Caller{UID: u.UID, User: u, Relayed: c.Relayed}
	}
	dir, root, err := a.archiveDir(target, q.Get(api.QuerySavePath))
	if err != nil {
		return nil, "", "", api.Quotas{}, nil, err
	}
	var quotas *api.Quotas
	if raw := q.Get(api.QueryQuotas); raw != "" {
		if !c.Relayed && c.UID != 0 {
			return nil, "", "", api.Quotas{}, nil, userErr(KindForbidden, "quotas are set by the site, not per request")
		}
		quotas = new(api.Quotas)
		if err := json.Unmarshal([]byte(raw), quotas); err != nil {
			return nil, "", "", api.Quotas{}, nil, userErr(KindInvalid, "bad %s: %v", api.QueryQuotas, err)
		}
	}
	var store *messages.LayerStore
	if place, err := a.placement(target, q.Get(api.QuerySavePath)); err == nil {
		if sd, sr, err := a.storeFor(c, place, target.User, q.Get(api.QueryStorePath)); err == nil {
			store = &messages.LayerStore{Root: sr, Dir: sd}
		}
	}
	return target.User, dir, root, a.quotas(quotas), store, nil
}

func (a *Agent) handleUsage(w http.ResponseWriter, r *http.Request) {
	u, dir, root, q, store, err := a.storageTarget(r)
	if err != nil {
		writeError(w, err)
		return
	}
	usage, err := a.usageOf(r.Context(), u, root, dir, dir, q, store)
	if err != nil {
		writeError(w, helperFailure(err, u, dir))
		return
	}
	writeJSON(w, http.StatusOK, usage)
}

func (a *Agent) handlePrune(w http.ResponseWriter, r *http.Request) {
	var req api.PruneRequest
	if err := httperr.DecodeJSON(r.Body, maxRequestBody, &req); err != nil {
		writeError(w, err)
		return
	}
	u, dir, root, _, store, err := a.storageTarget(r)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := a.prune(r.Context(), u, root, dir, store, req.DryRun)
	if err != nil {
		writeError(w, helperFailure(err, u, dir))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *Agent) handleRemove(w http.ResponseWriter, r *http.Request) {
	var req api.RemoveRequest
	if err := httperr.DecodeJSON(r.Body, maxRequestBody, &req); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Paths) == 0 || len(req.Paths) > maxListed {
		writeError(w, userErr(KindInvalid, "name between 1 and %d archives to remove", maxListed))
		return
	}
	u, dir, root, _, err := a.storageCaller(r)
	if err != nil {
		writeError(w, err)
		return
	}
	for _, p := range req.Paths {
		if !below(p, dir) || !strings.HasSuffix(p, api.ArchiveSuffix) {
			writeError(w, userErr(KindInvalid, "%q is not an archive below your save directory %s", p, dir))
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), listTimeout)
	defer cancel()
	var res *api.RemoveResult
	spec := messages.Spec{Op: messages.OpRemoveArchives, Root: root, Dir: dir, Paths: req.Paths}
	err = a.helpers.Run(ctx, u, spec, func(ev messages.Event) {
		if ev.Event == messages.EventDone && ev.Remove != nil {
			res = ev.Remove
		}
	})
	if err == nil && res == nil {
		err = errors.New("the remove helper ended without an answer")
	}
	if err != nil {
		writeError(w, helperFailure(err, u, dir))
		return
	}
	for _, p := range res.Removed {
		a.log.Info("archive removed", "user", u.Name, "archive", p, "requester", caller(r).Name())
	}
	writeJSON(w, http.StatusOK, res)
}

// helperFailure is a storage helper's failure as the user hears it.
func helperFailure(err error, u *identity.User, dir string) error {
	var he *helperError
	switch {
	case errors.As(err, &he) && he.denied:
		return &Error{Kind: KindForbidden, Err: err, Msg: fmt.Sprintf("%s cannot read the save directory %s: %v", u.Name, dir, err)}
	case errors.As(err, &he):
		return &Error{Kind: KindInvalid, Err: err, Msg: he.msg}
	}
	return err
}
