package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.podman.io/image/v5/docker/reference"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/agent/podman"
	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/policy"
)

// Provenance labels put on every frozen image.
const (
	LabelSourceContainer = "io.baicommit.source.container"
	LabelSourceID        = "io.baicommit.source.id"
	LabelBaseImage       = "io.baicommit.base-image"
	LabelNode            = "io.baicommit.node"
	LabelUser            = "io.baicommit.user"
	LabelJob             = "io.baicommit.job"
	LabelCreated         = "io.baicommit.created"
	LabelTask            = "io.baicommit.task"
)

// placement returns the policy that places an archive: the agent's own, or
// with the save path template the manager passed, which must still lead
// below the agent's save_roots (Destination checks).
func (a *Agent) placement(c Caller, savePath string) (*policy.Policy, error) {
	p := a.cfg.Policy
	if savePath == "" {
		return &p, nil
	}
	if !c.Relayed && c.UID != 0 {
		return nil, userErr(KindForbidden, "save_path is set by the site (the manager or the agent's configuration), not per request")
	}
	if !filepath.IsAbs(savePath) || filepath.Clean(savePath) != savePath {
		return nil, userErr(KindInvalid, "save_path %q must be a clean absolute path template", savePath)
	}
	p.SavePath = savePath
	return &p, nil
}

// Freeze validates and authorizes req, records a task and starts it. It
// returns the queued task; the work goes on in the background.
func (a *Agent) Freeze(ctx context.Context, c Caller, req api.FreezeRequest) (*api.Task, error) {
	return a.startFreeze(ctx, c, req, freezeOpts{})
}

// startFreeze is Freeze with the options of automatic freezes (jobs.go).
func (a *Agent) startFreeze(ctx context.Context, c Caller, req api.FreezeRequest, o freezeOpts) (*api.Task, error) {
	if !containerRE.MatchString(req.Container) {
		return nil, userErr(KindInvalid, "%q is not a container name or id: use the NAME or CONTAINER ID that `baicommit sessions` shows", req.Container)
	}
	if req.Node != "" && req.Node != a.cfg.NodeName {
		return nil, userErr(KindInvalid, "this is node %s, not %s", a.cfg.NodeName, req.Node)
	}
	if req.Job != "" && !api.ValidJobID(req.Job) {
		return nil, userErr(KindInvalid, "%q is not a Slurm job id (digits, or JOB_TASK for array jobs)", req.Job)
	}
	u, err := a.owner(c, req.User)
	if err != nil {
		return nil, err
	}
	conn, err := a.connect(ctx, u)
	if err != nil {
		return nil, err
	}
	ctr, err := conn.Inspect(ctx, req.Container)
	if err != nil {
		if errors.Is(err, podman.ErrNoSuchContainer) {
			return nil, userErr(KindNotFound, "no container %q in the Podman of %s on node %s (run `baicommit sessions` to list yours)", req.Container, u.Name, a.cfg.NodeName)
		}
		return nil, &Error{Kind: KindUnavailable, Err: err, Msg: fmt.Sprintf("inspect container %q: %v", req.Container, err)}
	}
	if req.Job == "" && api.ValidJobID(ctr.Labels[api.LabelJob]) {
		// The session said which Slurm job it belongs to.
		req.Job = ctr.Labels[api.LabelJob]
	}
	name := ctr.Name
	if !policy.Safe(name) {
		name = ctr.ID[:min(len(ctr.ID), 12)]
	}
	state := ctr.State
	now := time.Now().UTC()
	image, err := imageName(req.Image, name, now)
	if err != nil {
		return nil, err
	}
	var push *api.PushStatus
	if req.Push != nil {
		if push, err = checkPush(req.Push, c, u); err != nil {
			return nil, err
		}
	}
	if err := a.checkStorageRequest(c, &req); err != nil {
		return nil, err
	}
	id := newTaskID(a.cfg.NodeName)
	vars := policy.Vars{User: u.Name, UID: fmt.Sprint(u.UID), Node: a.cfg.NodeName, Job: req.Job,
		Container: name[:min(len(name), 64)], Task: taskToken(id), Time: now}
	place, err := a.placement(c, req.SavePath)
	if err != nil {
		return nil, err
	}
	dir, root, err := place.Destination(vars)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Err: err, Msg: "cannot place the archive: " + err.Error()}
	}
	file, err := a.cfg.ArchiveName(vars)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Err: err, Msg: "cannot name the archive: " + err.Error()}
	}
	format, err := place.ChooseFormat(req.Format)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Err: err, Msg: err.Error()}
	}
	var storeDir, storeRoot string
	if format != api.FormatArchive {
		if storeDir, storeRoot, err = a.storeFor(c, place, u, req.StorePath); err != nil {
			return nil, err
		}
	}
	rec := &taskstore.Record{
		Task: api.Task{
			ID: id, State: api.StateQueued, Container: req.Container, ContainerID: ctr.ID,
			Owner: u.Name, OwnerUID: u.UID, Requester: c.UID, Node: a.cfg.NodeName, Job: req.Job,
			Image: image, BaseImage: ctr.ImageName, Created: now, Push: push,
		},
		Dir: dir, Root: root,
		// Unique to node and task: saves from several nodes or several
		// freezes never meet under one temporary name.
		Temp:     ".baicommit-" + taskToken(id) + "." + a.cfg.NodeName + ".partial",
		StoreDir: storeDir, StoreRoot: storeRoot,
	}
	rec.Format = format
	if storeDir != "" {
		rec.StoreToken = "baicommit-" + taskToken(id) + "." + a.cfg.NodeName
	}
	rec.Planned = &api.Archive{Path: filepath.Join(dir, file), Sidecar: filepath.Join(dir, api.SidecarName(file))}
	if format != api.FormatStore {
		rec.Archive = &api.Archive{Path: rec.Planned.Path, Sidecar: rec.Planned.Sidecar}
	}
	rec.UserDir = place.UserDir(u.Name, strconv.Itoa(u.UID))
	// The owner's layer store counts against their quota, whatever this
	// freeze writes.
	rec.UserStore, rec.UserStoreRoot = storeDir, storeRoot
	if storeDir == "" {
		rec.UserStore, rec.UserStoreRoot, _ = a.storeFor(c, place, u, req.StorePath)
	}
	rec.UserBefore, rec.UserExclude, rec.Quotas = req.Before, req.Exclude, req.Quotas
	o.apply(rec, ctr)

	a.mu.Lock()
	key := busyKey{u.UID, ctr.ID}
	if running, ok := a.busy[key]; ok {
		a.mu.Unlock()
		return nil, &Error{Kind: KindConflict, Task: running,
			Msg: fmt.Sprintf("a freeze of %s is already running (task %s); wait for it with `baicommit status %s`", req.Container, running, running)}
	}
	sl, err := a.sched.admit(u.UID, o.trigger == api.TriggerEpilog)
	if err != nil {
		a.mu.Unlock()
		return nil, err
	}
	// Persisted before anything else happens, so a crash leaves a record.
	if err := a.store.Put(rec); err != nil {
		a.mu.Unlock()
		a.sched.release(sl)
		return nil, fmt.Errorf("record task: %w", err)
	}
	a.busy[key] = id
	a.live[id] = rec
	cp := clone(rec).Task
	a.mu.Unlock()

	a.log.Info("freeze queued", "task", id, "container", req.Container, "owner", u.Name, "requester", c.Name(), "archive", rec.Planned.Path, "format", format)
	a.Activity.Begin()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer a.Activity.End()
		a.run(rec, u, state, req.Push, sl)
	}()
	return &cp, nil
}

// imageName returns the name:tag the archive records, the caller's or
// localhost/baicommit/<container>:<time>.
func imageName(want, container string, now time.Time) (string, error) {
	if want == "" {
		// Image name components allow fewer separators than container
		// names: every run of anything else becomes one '-'.
		repo := strings.Join(strings.FieldsFunc(strings.ToLower(container), func(r rune) bool {
			return (r < 'a' || r > 'z') && (r < '0' || r > '9')
		}), "-")
		if repo == "" {
			repo = "session"
		}
		want = "localhost/baicommit/" + repo + ":" + now.Format("20060102-150405")
	}
	named, err := reference.ParseNormalizedNamed(want)
	if err != nil {
		return "", userErr(KindInvalid, "%q is not a valid image name: use NAME:TAG with lower-case letters, digits, '.', '_', '-' and '/' (%v)", want, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return "", userErr(KindInvalid, "image name %q has a digest; give a NAME:TAG", want)
	}
	return reference.TagNameOnly(named).String(), nil
}

// update applies f to the live record and persists it.
func (a *Agent) update(r *taskstore.Record, f func(*taskstore.Record)) {
	a.mu.Lock()
	f(r)
	cp := *r
	a.mu.Unlock()
	if err := a.store.Put(&cp); err != nil {
		a.log.Error("persist task", "task", r.ID, "err", err)
	}
}

// run carries a task to its end, once the scheduler gives it one of the
// node's freeze slots (until then it stays queued), and within
// task_timeout from then.
func (a *Agent) run(r *taskstore.Record, u *identity.User, state string, push *api.PushRequest, sl *slot) {
	defer a.sched.release(sl)
	if err := a.sched.wait(a.ctx, sl); err != nil {
		a.finish(r, err, time.Now())
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.TaskTimeout.Duration)
	defer cancel()
	start := time.Now()
	a.update(r, func(r *taskstore.Record) {
		r.State, r.Phase, r.Started = api.StateRunning, api.PhaseConnecting, start.UTC()
	})
	err := a.freeze(ctx, r, u, state)
	if err == nil && push != nil {
		// push holds the request's credentials, which live only here and
		// in the push helper's standard input.
		a.push(ctx, r, u, *push)
	}
	a.finish(r, overrun(ctx, a.cfg.TaskTimeout.Duration, err), start)
}

// finish records how a task ended and lets its container be frozen again.
func (a *Agent) finish(r *taskstore.Record, err error, start time.Time) {
	a.update(r, func(r *taskstore.Record) {
		// Free the container in the same instant the task is seen ended
		// (update holds a.mu): whoever sees it ended may freeze again.
		delete(a.busy, busyKey{r.OwnerUID, r.ContainerID})
		r.Phase = ""
		r.ImageID = "" // removed, or kept under the frozen name
		r.Finished = time.Now().UTC()
		r.Durations.Total = time.Since(start).Seconds()
		r.Temp = ""
		if err != nil {
			r.State = api.StateFailed
			r.Error = a.explain(err, r)
			r.Archive = nil
			if r.Push != nil {
				r.Push.State, r.Push.Error = api.PushFailed, "nothing was pushed: the freeze failed"
			}
			return
		}
		r.State = api.StateSucceeded
	})
	a.mu.Lock()
	delete(a.live, r.ID)
	a.mu.Unlock()
	if _, perr := a.store.Prune(r.OwnerUID, a.retention(), time.Now()); perr != nil {
		a.log.Warn("could not prune the task store", "owner", r.Owner, "err", perr)
	}
	if err != nil {
		a.log.Warn("freeze failed", "task", r.ID, "container", r.Container, "owner", r.Owner, "err", err)
		return
	}
	attrs := []any{"task", r.ID, "container", r.Container, "owner", r.Owner, "format", r.Format, "seconds", r.Durations.Total}
	if r.Archive != nil {
		attrs = append(attrs, "archive", r.Archive.Path, "size", r.Archive.Size)
	}
	if r.Store != nil {
		attrs = append(attrs, "store_image", r.Store.Path, "written", r.Store.Written)
	}
	a.log.Info("freeze succeeded", attrs...)
}

// explain turns a failure into words the user can act on.
func (a *Agent) explain(err error, r *taskstore.Record) string {
	var he *helperError
	var te *taskTimeoutError
	switch {
	case errors.As(err, &te):
		return te.Error()
	case errors.As(err, &he) && he.noSpace:
		return fmt.Sprintf("the save location %s is full (no space left on device or quota exceeded); nothing was written. Free space there or ask your site admin, then freeze again.", r.Dir)
	case a.ctx.Err() != nil:
		// Whatever failed first, the cause is the agent stopping.
		return "the agent was stopped while this freeze was running; no archive was written. Run the freeze again."
	}
	return err.Error()
}

func (a *Agent) freeze(ctx context.Context, r *taskstore.Record, u *identity.User, state string) error {
	// Connect again rather than reuse the request's connection: a queued
	// task may start after the transient service it saw has gone idle.
	conn, err := a.connect(ctx, u)
	if err != nil {
		return err
	}
	if state, err = a.stopFirst(ctx, conn, r, state); err != nil {
		return err
	}
	st, err := conn.Store(ctx)
	if err != nil {
		return fmt.Errorf("ask the Podman of %s where its images are: %w", u.Name, err)
	}
	if err := a.runBefore(ctx, u, conn, r, state); err != nil {
		return err
	}
	if a.cfg.FreezeMethod == policy.FreezeCommit {
		a.archiveOnly(r)
		err = a.freezeByCommit(ctx, conn, r, u, state, st)
	} else {
		err = a.freezeDirect(ctx, conn, r, u, state, st)
		var he *helperError
		if errors.As(err, &he) && he.unsupported {
			a.update(r, func(r *taskstore.Record) {
				r.Warnings = append(r.Warnings, "the container could not be read directly ("+he.msg+"), so it was frozen through podman commit instead")
			})
			a.archiveOnly(r)
			a.log.Info("freeze falls back to podman commit", "task", r.ID, "why", he.msg)
			err = a.freezeByCommit(ctx, conn, r, u, state, st)
		}
	}
	if err == nil {
		a.applyRetention(ctx, u, r)
	}
	return err
}

// archiveOnly notes that a freeze on the commit path writes an archive
// whatever its format: the layer store is written from the container's
// storage only.
func (a *Agent) archiveOnly(r *taskstore.Record) {
	if r.Format == api.FormatArchive {
		return
	}
	a.update(r, func(r *taskstore.Record) {
		r.Warnings = append(r.Warnings, "the layer store is written by direct freezes only: this one was written as an archive")
		r.Format = api.FormatArchive
		r.Archive = &api.Archive{Path: r.Planned.Path, Sidecar: r.Planned.Sidecar}
	})
}

// freezeDirect has the owner-side helper write the archive straight from
// the container's storage, the container paused meanwhile where the
// runtime can pause it.
func (a *Agent) freezeDirect(ctx context.Context, conn Podman, r *taskstore.Record, u *identity.User, state string, st podman.Store) error {
	ctr, err := conn.Inspect(ctx, r.ContainerID)
	if err != nil {
		if errors.Is(err, podman.ErrNoSuchContainer) {
			return userErr(KindNotFound, "container %s disappeared before it could be frozen", r.Container)
		}
		return fmt.Errorf("inspect %s: %w", r.Container, err)
	}
	quota, err := a.quotaCheck(ctx, u, r)
	if err != nil {
		return err
	}
	if state == "running" {
		if unpause := a.pause(ctx, conn, r); unpause != nil {
			defer unpause()
		}
	}
	a.update(r, func(r *taskstore.Record) { r.Phase, r.Method = api.PhaseExporting, api.MethodDirect })
	t0 := time.Now()
	mode, _ := a.cfg.Mode()
	spec := messages.Spec{
		Op: messages.OpFreeze, Root: r.Root, Dir: r.Dir, Name: filepath.Base(r.Planned.Path), Temp: r.Temp,
		SidecarName: filepath.Base(r.Planned.Sidecar), RepoTag: r.Image,
		Store:    messages.Store{GraphRoot: st.GraphRoot, RunRoot: st.RunRoot, Driver: st.Driver},
		ScrubEnv: a.cfg.ScrubEnv, Mode: mode, Level: a.cfg.CompressionLevel,
		ContainerID: r.ContainerID,
		Container: &messages.Container{
			Entrypoint: ctr.Entrypoint, Cmd: ctr.Cmd, Env: ctr.Env, WorkingDir: ctr.WorkingDir, User: ctr.User,
			Labels: ctr.Labels, ExposedPorts: ctr.ExposedPorts, Volumes: ctr.AnonymousVolumes, Mounts: ctr.Mounts,
		},
		Exclude: a.cfg.Exclude, UserExclude: r.UserExclude, Quota: quota,
		Labels: provenance(r), Comment: "frozen by baicommit task " + r.ID,
		Sidecar: a.sidecar(r, state, ""), Format: r.Format,
	}
	if r.StoreDir != "" {
		spec.LayerStore = &messages.LayerStore{Root: r.StoreRoot, Dir: r.StoreDir, Token: r.StoreToken,
			// Lower case: Podman 4.3 names an image pulled from a layout
			// after its path.
			Image: strings.ToLower(strings.TrimSuffix(filepath.Base(r.Planned.Path), api.ArchiveSuffix)), Level: a.cfg.CompressionLevel}
	}
	done, err := a.runTaskHelper(ctx, u, spec, r, func(ev messages.Event) {
		r.Progress.BytesRead, r.Progress.BytesWritten = ev.Read, ev.Written
		if ev.Total > 0 {
			r.Progress.BytesTotal = ev.Total
		}
		r.Progress.SecondsLeft = secondsLeft(ev.Read, r.Progress.BytesTotal, time.Since(t0))
	})
	if err != nil {
		return err
	}
	a.update(r, func(r *taskstore.Record) {
		r.Phase = api.PhaseFinishing
		r.Durations.Export = time.Since(t0).Seconds()
		r.Progress.BytesRead, r.Progress.BytesWritten, r.Progress.BytesTotal = done.Read, done.Written, done.Read
		r.Progress.SecondsLeft = 0
		r.ImageID, r.Exclusions, r.Store = done.ImageID, done.Exclusions, done.Store
		if r.Archive == nil {
			return
		}
		r.Archive.SHA256, r.Archive.Size, r.Archive.Uncompressed = done.SHA256, done.Size, done.Read
	})
	if a.cfg.KeepImage {
		a.keepImage(ctx, u, r)
	}
	return nil
}

// secondsLeft estimates the time to go at the pace so far (0 until there
// is a pace to go by).
func secondsLeft(done, total int64, took time.Duration) float64 {
	if done <= 0 || total <= done || took < time.Second {
		return 0
	}
	return took.Seconds() * float64(total-done) / float64(done)
}

// pause pauses a running container for a consistent read and returns
// what unpauses it (nil if it was not paused: the runtime cannot, and the
// task says so). The task records the pause first, so that an agent that
// dies meanwhile unpauses it when it starts again.
func (a *Agent) pause(ctx context.Context, conn Podman, r *taskstore.Record) func() {
	a.update(r, func(r *taskstore.Record) { r.Phase, r.Paused = api.PhasePausing, true })
	err := conn.Pause(ctx, r.ContainerID)
	if err != nil {
		a.update(r, func(r *taskstore.Record) {
			r.Paused = false
			if errors.Is(err, podman.ErrCannotPause) {
				r.Warnings = append(r.Warnings, "the container could not be paused (rootless on cgroup v1), so it was frozen while running; files being written at that moment may be inconsistent")
			} else {
				r.Warnings = append(r.Warnings, "the container could not be paused ("+err.Error()+"), so it was frozen while running; files being written at that moment may be inconsistent")
			}
		})
		return nil
	}
	return func() {
		// The task's context may be cancelled; the container must run on.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := conn.Unpause(uctx, r.ContainerID); err != nil && !errors.Is(err, podman.ErrNoSuchContainer) {
			a.log.Error("could not unpause a container after its freeze", "task", r.ID, "container", r.Container, "err", err)
			return
		}
		a.update(r, func(r *taskstore.Record) { r.Paused = false })
	}
}

// keepImage loads the published archive into the owner's Podman (the
// owner's own podman reads it, not the agent), so that the frozen image
// is there under its name: only then does a freeze use the node's disk.
func (a *Agent) keepImage(ctx context.Context, u *identity.User, r *taskstore.Record) {
	ctx, cancel := context.WithTimeout(ctx, keepImageTimeout)
	defer cancel()
	from := ""
	switch {
	case r.Archive != nil:
		from = r.Archive.Path
	case r.Store != nil:
		from = "oci:" + r.Store.Path + ":" + r.Image
	}
	if err := a.loader.Load(ctx, u, from); err != nil {
		a.update(r, func(r *taskstore.Record) {
			r.Warnings = append(r.Warnings, "keep_image: the archive is complete, but loading it into your Podman failed: "+err.Error())
		})
		a.log.Warn("could not load a kept image", "task", r.ID, "err", err)
	}
}

// keepImageTimeout bounds the load of a kept image.
const keepImageTimeout = 30 * time.Minute

// provenance are the labels every frozen image carries.
func provenance(r *taskstore.Record) map[string]string {
	l := map[string]string{}
	for _, kv := range [][2]string{
		{LabelSourceContainer, r.Container}, {LabelSourceID, r.ContainerID}, {LabelBaseImage, r.BaseImage},
		{LabelNode, r.Node}, {LabelUser, r.Owner}, {LabelJob, r.Job},
		{LabelCreated, r.Created.Format(time.RFC3339)}, {LabelTask, r.ID},
	} {
		if kv[1] != "" {
			l[kv[0]] = kv[1]
		}
	}
	return l
}

// sidecar is what the archive's sidecar says of task r; the helper adds
// the digest, the size and what it left out.
func (a *Agent) sidecar(r *taskstore.Record, state, imageID string) api.Sidecar {
	return api.Sidecar{
		Image: r.Image, ImageID: imageID, SourceContainer: r.Container, SourceID: r.ContainerID,
		BaseImage: r.BaseImage, Node: r.Node, User: r.Owner, UID: r.OwnerUID, Job: r.Job, Task: r.ID,
		ContainerState: state, Created: r.Created,
		ContainerExit: r.ExitCode, JobExit: r.JobExit, Trigger: r.Trigger,
	}
}

// freezeByCommit is the commit path: podman commit (paused where the
// runtime can), then the helper exports the committed image from the
// owner's storage.
func (a *Agent) freezeByCommit(ctx context.Context, conn Podman, r *taskstore.Record, u *identity.User, state string, st podman.Store) error {
	a.update(r, func(r *taskstore.Record) { r.Phase, r.Method = api.PhaseCommitting, api.MethodCommit })
	t0 := time.Now()
	imageID, warn, err := a.commit(ctx, conn, r, state)
	if err != nil {
		return err
	}
	defer a.dropImage(ctx, conn, r.ID, r.Image, imageID)
	a.update(r, func(r *taskstore.Record) {
		// Recorded so that an agent restarted mid-export can remove it.
		r.ImageID = imageID
		r.Durations.Commit = time.Since(t0).Seconds()
		if warn != "" {
			r.Warnings = append(r.Warnings, warn)
		}
	})
	size, err := conn.ImageSize(ctx, imageID)
	if err == nil {
		// The docker-archive stream is about the image's size plus tar
		// headers: a good enough total for a progress bar.
		a.update(r, func(r *taskstore.Record) { r.Progress.BytesTotal = size })
	}
	quota, err := a.quotaCheck(ctx, u, r)
	if err != nil {
		return err
	}
	a.update(r, func(r *taskstore.Record) { r.Phase = api.PhaseExporting })
	t1 := time.Now()
	mode, _ := a.cfg.Mode()
	file, sidecar := filepath.Base(r.Archive.Path), filepath.Base(r.Archive.Sidecar)
	sc := a.sidecar(r, state, imageID)
	sc.Method = api.MethodCommit
	spec := messages.Spec{
		Op: messages.OpArchiveImage, Root: r.Root, Dir: r.Dir, Name: file, Temp: r.Temp, SidecarName: sidecar,
		ImageID: imageID, RepoTag: r.Image, SizeHint: size, Quota: quota,
		Store:    messages.Store{GraphRoot: st.GraphRoot, RunRoot: st.RunRoot, Driver: st.Driver},
		ScrubEnv: a.cfg.ScrubEnv, Mode: mode, Level: a.cfg.CompressionLevel,
		Sidecar: sc,
	}
	done, err := a.runTaskHelper(ctx, u, spec, r, func(ev messages.Event) {
		r.Progress.BytesRead, r.Progress.BytesWritten = ev.Read, ev.Written
	})
	if err != nil {
		return err
	}
	a.update(r, func(r *taskstore.Record) {
		r.Phase = api.PhaseFinishing
		r.Durations.Export = time.Since(t1).Seconds()
		r.Progress.BytesRead, r.Progress.BytesWritten = done.Read, done.Written
		r.Archive.SHA256, r.Archive.Size, r.Archive.Uncompressed = done.SHA256, done.Size, done.Read
	})
	return nil
}

// commit commits the container with provenance labels, pausing it when it
// runs and the runtime can pause it.
func (a *Agent) commit(ctx context.Context, conn Podman, r *taskstore.Record, state string) (id, warning string, err error) {
	labels := provenance(r)
	var changes []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		v := labels[k]
		if strings.ContainsAny(v, "\"\\\n\r\t ") {
			return "", "", fmt.Errorf("label %s=%q cannot be recorded", k, v)
		}
		changes = append(changes, fmt.Sprintf("LABEL %s=\"%s\"", k, v))
	}
	opts := podman.CommitOptions{Changes: changes, Comment: "frozen by baicommit task " + r.ID, Pause: state == "running"}
	id, err = conn.Commit(ctx, r.ContainerID, opts)
	if errors.Is(err, podman.ErrCannotPause) {
		// Rootless containers on cgroup v1 have no freezer: commit the
		// running container as it is, and say so.
		warning = "the container could not be paused (rootless on cgroup v1), so it was committed while running; files being written at that moment may be inconsistent"
		opts.Pause = false
		id, err = conn.Commit(ctx, r.ContainerID, opts)
	}
	if err != nil {
		if errors.Is(err, podman.ErrNoSuchContainer) {
			return "", "", userErr(KindNotFound, "container %s disappeared before it could be committed", r.Container)
		}
		return "", "", fmt.Errorf("podman commit of %s failed: %w", r.Container, err)
	}
	return id, warning, nil
}

// dropImage removes the intermediate image, or tags it with the frozen
// name when the policy keeps images.
func (a *Agent) dropImage(ctx context.Context, conn Podman, task, name, id string) {
	// The task's own context may be cancelled; clean-up still runs, for
	// at most cleanupTimeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if a.cfg.KeepImage {
		if err := conn.TagImage(ctx, id, name); err != nil {
			a.log.Warn("could not tag the kept image", "task", task, "image", id, "err", err)
		}
		return
	}
	if err := conn.RemoveImage(ctx, id); err != nil {
		a.log.Warn("could not remove the intermediate image", "task", task, "image", id, "err", err)
	}
}

// cleanupTimeout bounds each clean-up call to a user's Podman.
const cleanupTimeout = 2 * time.Minute

// unpauseStale unpauses the container of a task an earlier agent paused
// and did not live to unpause.
func (a *Agent) unpauseStale(t api.Task) {
	a.cleanUpAfter(t, "unpause the container", func(ctx context.Context, conn Podman) error {
		err := conn.Unpause(ctx, t.ContainerID)
		if errors.Is(err, podman.ErrNoSuchContainer) {
			return nil
		}
		return err
	})
}

// dropStaleImage removes the intermediate image of a task an earlier
// agent did not finish.
func (a *Agent) dropStaleImage(t api.Task) {
	a.cleanUpAfter(t, "remove the intermediate image", func(ctx context.Context, conn Podman) error {
		a.dropImage(ctx, conn, t.ID, t.Image, t.ImageID)
		return nil
	})
}

// cleanUpAfter does what an interrupted task t left undone in its owner's
// Podman, within cleanupTimeout, and logs how it went.
func (a *Agent) cleanUpAfter(t api.Task, what string, do func(context.Context, Podman) error) {
	defer a.wg.Done()
	u, err := a.accounts.Lookup(strconv.Itoa(t.OwnerUID))
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, cleanupTimeout)
	defer cancel()
	conn, err := a.connect(ctx, u)
	if err == nil {
		err = do(ctx, conn)
	}
	if err != nil {
		a.log.Error("could not "+what+" of an interrupted freeze", "task", t.ID, "container", t.Container, "err", err)
		return
	}
	a.log.Info("cleaned up after an interrupted freeze: "+what, "task", t.ID, "container", t.Container)
}
