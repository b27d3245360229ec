package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/agent/runas"
	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/internal/identity"
)

// helperError is a failure the helper reported.
type helperError struct {
	msg     string
	noSpace bool
	denied  bool
	// unsupported: the direct freeze cannot read this setup and wrote
	// nothing; the commit path can.
	unsupported bool
	// quotaExceeded: the freeze would pass a limit; nothing was written.
	quotaExceeded bool
}

func (e *helperError) Error() string { return e.msg }

// ownerHelper runs this binary again as the owner (messages.Command) to
// carry out a Spec: only it, never the root agent, touches the owner's
// files.
type ownerHelper struct {
	bin string // the baicommit-agent binary
	log *slog.Logger
	// cgroups places each helper where the owner's processes belong.
	cgroups runas.Cgroups
	// threads caps the helper's threads (GOMAXPROCS); 0 leaves it to Go,
	// which counts the cores the helper may run on.
	threads int
}

// Run starts `bin as-owner OP` as u, hands it spec on standard input and
// passes each event it reports to onEvent. An operation in u's user
// namespace that writes below a save directory has that directory made
// and checked first, by a helper with u's host credentials
// (messages.OpPrepareDir).
func (h ownerHelper) Run(ctx context.Context, u *identity.User, spec messages.Spec, onEvent func(messages.Event)) error {
	if messages.InNamespace(spec.Op) && spec.Root != "" && spec.Dir != "" {
		prep := messages.Spec{Op: messages.OpPrepareDir, Root: spec.Root, Dir: spec.Dir, Mode: spec.Mode}
		if err := h.run(ctx, u, prep, func(messages.Event) {}); err != nil {
			return err
		}
	}
	return h.run(ctx, u, spec, onEvent)
}

func (h ownerHelper) run(ctx context.Context, u *identity.User, spec messages.Spec, onEvent func(messages.Event)) error {
	in, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, h.bin, messages.Command, spec.Op)
	// A cancelled task asks the helper to stop, so it can remove its
	// temporary file (and wakes it, should its owner have stopped it with
	// SIGSTOP); a helper that does not stop is killed.
	cmd.Cancel = func() error {
		err := cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Process.Signal(syscall.SIGCONT)
		return err
	}
	cmd.WaitDelay = 30 * time.Second
	cmd.Dir = "/"
	cmd.Env = runas.Env(u)
	if h.threads > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(h.threads))
	}
	// The spec is written once the helper is in the owner's cgroup: it
	// does nothing before it has read it.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if messages.InNamespace(spec.Op) {
		// Reading the image store needs the owner's rootless namespace.
		attr, env, err := runas.Namespace(u)
		if err != nil {
			return err
		}
		cmd.SysProcAttr = attr
		cmd.Env = append(cmd.Env, env...)
	} else {
		cmd.SysProcAttr = runas.Credentials(u)
	}
	if spec.Op == messages.OpPush {
		// Where the owner's `podman login` keeps its auth file.
		cmd.Env = append(cmd.Env, runas.RuntimeDirEnv(u)...)
	}
	// A helper never outlives the agent (the agent's restart recovery then
	// removes what it left).
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	var stderr tailBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the %s helper as %s: %w", spec.Op, u.Name, err)
	}
	if _, err := h.cgroups.Place(cmd.Process.Pid, u); err != nil {
		h.log.Warn("could not place the helper in its owner's cgroup", "op", spec.Op, "user", u.Name, "err", err)
	}
	go func() {
		// A helper that never reads (stopped by its owner) is killed at
		// the task's end, which ends this write too.
		_, _ = stdin.Write(in)
		stdin.Close()
	}()
	var failed *helperError
	derr := messages.Decode(out, func(ev messages.Event) {
		if ev.Event == messages.EventError {
			failed = &helperError{msg: ev.Message, noSpace: ev.NoSpace, denied: ev.Denied, unsupported: ev.Unsupported, quotaExceeded: ev.QuotaExceeded}
			return
		}
		onEvent(ev)
	})
	werr := cmd.Wait()
	if failed != nil {
		return failed
	}
	if werr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.log.Error("owner-side helper failed", "op", spec.Op, "user", u.Name, "err", werr, "stderr", stderr.String())
		return fmt.Errorf("the %s helper failed (%v): %s", spec.Op, werr, strings.TrimSpace(stderr.String()))
	}
	if derr != nil {
		// Events after an unreadable line were lost: the run's result is
		// not known.
		return fmt.Errorf("read the helper's report: %w", derr)
	}
	return nil
}

// tailBuffer keeps the last few KiB written to it.
type tailBuffer struct{ b []byte }

const tailMax = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = t.b[len(t.b)-tailMax:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// removeTemp removes a task's temporary archive, as its owner.
func (a *Agent) removeTemp(ctx context.Context, u *identity.User, r *taskstore.Record) error {
	spec := messages.Spec{Op: messages.OpRemove, Root: r.Root, Dir: r.Dir, Temp: r.Temp}
	if r.StoreToken != "" {
		spec.LayerStore = &messages.LayerStore{Root: r.StoreRoot, Dir: r.StoreDir, Token: r.StoreToken}
	}
	return a.helpers.Run(ctx, u, spec, func(messages.Event) {})
}

// runTaskHelper runs a helper for task r and returns its done event: its
// warnings go into the task, its progress events to progress, which runs
// with the agent's lock held (readers of the live task take it too).
func (a *Agent) runTaskHelper(ctx context.Context, u *identity.User, spec messages.Spec, r *taskstore.Record, progress func(messages.Event)) (messages.Event, error) {
	var done messages.Event
	err := a.helpers.Run(ctx, u, spec, func(ev messages.Event) {
		switch ev.Event {
		case messages.EventProgress:
			a.mu.Lock()
			progress(ev)
			a.mu.Unlock()
		case messages.EventWarning:
			a.update(r, func(r *taskstore.Record) { r.Warnings = append(r.Warnings, ev.Message) })
		case messages.EventDone:
			done = ev
		}
	})
	return done, err
}
