package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/baicommit/baicommit/agent/podman"
	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/httperr"
	"github.com/baicommit/baicommit/policy"
)

// freezeOpts are what an automatic freeze adds to a request.
type freezeOpts struct {
	trigger string
	jobExit string
	// stop the container first if it still runs.
	stop bool
}

// apply records the options and the container's exit code in a new task.
func (o freezeOpts) apply(r *taskstore.Record, ctr *podman.Container) {
	r.Trigger, r.JobExit, r.Stop = o.trigger, o.jobExit, o.stop
	r.ExitCode = exitCode(ctr)
}

// exitCode is the container's exit code, or nil while it has not exited.
func exitCode(ctr *podman.Container) *int {
	if ctr == nil || ctr.Running || ctr.FinishedAt.IsZero() {
		return nil
	}
	code := ctr.ExitCode
	return &code
}

// stopFirst stops the container of a task that asks for it while it still
// runs, and returns its state after. A session of an ended job runs on only
// when its processes escaped the job (proctrack/linuxproc does not follow
// conmon, which daemonizes): stopping it is what the job's end should have
// done, and a stopped container commits without files changing under it.
func (a *Agent) stopFirst(ctx context.Context, conn Podman, r *taskstore.Record, state string) (string, error) {
	if !r.Stop || state != "running" {
		return state, nil
	}
	// The container's own stop timeout (--stop-timeout, 10 s by default)
	// between its stop signal and SIGKILL, as `podman stop` would.
	if err := conn.Stop(ctx, r.ContainerID); err != nil {
		if errors.Is(err, podman.ErrNoSuchContainer) {
			return "", userErr(KindNotFound, "container %s disappeared before it could be committed", r.Container)
		}
		return "", fmt.Errorf("stop %s, which still ran after its job ended: %w", r.Container, err)
	}
	ctr, err := conn.Inspect(ctx, r.ContainerID)
	if err != nil {
		if errors.Is(err, podman.ErrNoSuchContainer) {
			return "", userErr(KindNotFound, "container %s was removed when it was stopped (started with --rm?); nothing to freeze", r.Container)
		}
		return "", fmt.Errorf("inspect %s after stopping it: %w", r.Container, err)
	}
	state = ctr.State
	code := exitCode(ctr)
	a.update(r, func(r *taskstore.Record) {
		r.ExitCode = code
		r.Warnings = append(r.Warnings, "the container still ran after its job ended (its processes escaped the job); it was stopped before the freeze")
	})
	a.log.Info("stopped a session that outlived its job", "task", r.ID, "container", r.Container, "job", r.Job, "state", state)
	return state, nil
}

// FreezeJob freezes the sessions of Slurm job `job` owned by req.User that
// the site's epilog_freeze selects, and returns the tasks started (or
// already running) and the containers left alone. Only containers labelled
// baicommit.job=<job> are ever considered: a container of another job, or
// without the label, is never touched. Root and admins may ask for any
// user; a user for themselves.
func (a *Agent) FreezeJob(ctx context.Context, c Caller, job string, req api.JobFreezeRequest) (*api.JobFreezes, error) {
	if !api.ValidJobID(job) {
		return nil, userErr(KindInvalid, "%q is not a Slurm job id (digits, or JOB_TASK for array jobs)", job)
	}
	if req.Exit != "" && !api.ValidJobExit(req.Exit) {
		return nil, userErr(KindInvalid, "exit %q: want Slurm's EXIT:SIGNAL, like 0:0", req.Exit)
	}
	if req.User == "" {
		return nil, userErr(KindInvalid, "name the job's user (SLURM_JOB_UID or SLURM_JOB_USER)")
	}
	u, err := a.owner(c, req.User)
	if err != nil {
		return nil, err
	}
	out := &api.JobFreezes{Job: job, Policy: a.cfg.EpilogFreeze, Tasks: []api.Task{}}
	if a.cfg.EpilogFreeze == policy.EpilogOff {
		return out, nil
	}
	if !mayHavePodman(podmanStatePaths(u.UID, u.Home)) {
		// Every job's end on the node asks; starting a Podman service for
		// a user who never ran Podman would create storage in their home.
		a.log.Info("job ended: its user never ran Podman here", "job", job, "user", u.Name)
		return out, nil
	}
	conn, err := a.connect(ctx, u)
	if err != nil {
		return nil, err
	}
	list, err := conn.List(ctx, api.LabelJob+"="+job)
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Err: err, Msg: "list containers: " + err.Error()}
	}
	for _, ctr := range list {
		// Podman filtered already; the label decides, so check it here too.
		if ctr.Labels[api.LabelJob] != job {
			continue
		}
		name := ctr.ID
		if len(ctr.Names) > 0 && containerRE.MatchString(ctr.Names[0]) {
			name = ctr.Names[0]
		}
		if why := a.leaveAlone(ctr.Labels[api.LabelFreeze]); why != "" {
			out.Skipped = append(out.Skipped, api.JobSkip{Container: name, Reason: why})
			continue
		}
		o := freezeOpts{trigger: api.TriggerEpilog, jobExit: req.Exit,
			// Stopping a --rm container removes it, and its data with it.
			stop: a.cfg.EpilogStop && !ctr.AutoRemove}
		t, err := a.startFreeze(ctx, c, api.FreezeRequest{Container: name, User: u.Name, Job: job}, o)
		var e *Error
		switch {
		case errors.As(err, &e) && e.Kind == KindConflict:
			// Already being frozen (the signal helper, a user): that task
			// is this job's freeze of it.
			if running, terr := a.Task(c, e.Task); terr == nil {
				out.Tasks = append(out.Tasks, *running)
				continue
			}
			out.Skipped = append(out.Skipped, api.JobSkip{Container: name, Reason: err.Error()})
		case err != nil:
			out.Skipped = append(out.Skipped, api.JobSkip{Container: name, Reason: err.Error()})
		default:
			out.Tasks = append(out.Tasks, *t)
		}
	}
	a.log.Info("job ended: freezes started", "job", job, "user", u.Name, "requester", c.Name(), "policy", a.cfg.EpilogFreeze,
		"exit", req.Exit, "tasks", len(out.Tasks), "skipped", len(out.Skipped))
	return out, nil
}

// podmanStatePaths are where rootless Podman keeps state once a user ran a
// container: its run root with and without XDG_RUNTIME_DIR (Podman 4 and
// 5), and the default image store.
func podmanStatePaths(uid int, home string) []string {
	id := strconv.Itoa(uid)
	paths := []string{
		"/run/user/" + id + "/containers", "/run/user/" + id + "/libpod",
		"/tmp/podman-run-" + id, "/tmp/storage-run-" + id, "/tmp/containers-user-" + id,
	}
	if home != "" {
		paths = append(paths, filepath.Join(home, ".local/share/containers"))
	}
	return paths
}

// mayHavePodman reports whether one of paths exists, or cannot be checked
// (a home on NFS with root_squash): only a clear "none exists" is no.
func mayHavePodman(paths []string) bool {
	for _, p := range paths {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

// leaveAlone says why a job's container with this baicommit.freeze label
// is not frozen at the job's end, or "" if it is.
func (a *Agent) leaveAlone(label string) string {
	switch {
	case label == api.FreezeNever:
		return "labelled " + api.LabelFreeze + "=" + api.FreezeNever
	case label == api.FreezeOnSignal:
		return "labelled " + api.LabelFreeze + "=" + api.FreezeOnSignal + ": the batch script's signal helper freezes it"
	case label == api.FreezeOnExit:
		return ""
	case a.cfg.EpilogFreeze == policy.EpilogJob:
		return ""
	}
	return fmt.Sprintf("not opted in: start it with --label %s=%s (this site's epilog_freeze is %q)",
		api.LabelFreeze, api.FreezeOnExit, a.cfg.EpilogFreeze)
}

func (a *Agent) handleJobFreeze(w http.ResponseWriter, r *http.Request) {
	var req api.JobFreezeRequest
	if err := httperr.DecodeJSON(r.Body, maxRequestBody, &req); err != nil {
		writeError(w, err)
		return
	}
	job := r.PathValue("job")
	res, err := a.FreezeJob(r.Context(), caller(r), job, req)
	if err != nil {
		a.log.Info("job freeze refused", "caller", caller(r).UID, "job", strings.ToValidUTF8(job, "?"), "status", Status(err), "err", err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, res)
}
