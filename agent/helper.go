package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/baicommit/baicommit/agent/export"
	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/agent/userpodman"
)

// helperError is a failure the helper reported.
type helperError struct {
	msg     string
	noSpace bool
	denied  bool
}

func (e *helperError) Error() string { return e.msg }

// runHelper runs this binary as u to carry out spec, passing each event
// to onEvent. Only the helper, never the root agent, touches the owner's
// files.
func (a *Agent) runHelper(ctx context.Context, u *userpodman.User, spec export.Spec, onEvent func(export.Event)) error {
	in, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, a.helper, export.Command, spec.Op)
	// A cancelled task asks the helper to stop, so it can remove its
	// temporary file; a helper that does not stop is killed.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Dir = "/"
	cmd.Env = u.Env()
	cmd.Stdin = bytes.NewReader(in)
	if spec.Op == export.OpExport {
		// Reading the image store needs the owner's rootless namespace.
		attr, env, err := u.NamespaceAttr()
		if err != nil {
			return err
		}
		cmd.SysProcAttr = attr
		cmd.Env = append(cmd.Env, env...)
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: u.Groups},
		}
	}
	if spec.Op == export.OpPush {
		// Where the owner's `podman login` keeps its auth file.
		cmd.Env = append(cmd.Env, runtimeDirEnv(u)...)
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
		return fmt.Errorf("start export helper as %s: %w", u.Name, err)
	}
	var failed *helperError
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev export.Event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		if ev.Event == export.EventError {
			failed = &helperError{msg: ev.Message, noSpace: ev.NoSpace, denied: ev.Denied}
			continue
		}
		onEvent(ev)
	}
	// A line too long for the scanner must not leave the helper blocked
	// on a full pipe.
	_, _ = io.Copy(io.Discard, out)
	werr := cmd.Wait()
	if failed != nil {
		return failed
	}
	if werr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.log.Error("export helper failed", "user", u.Name, "err", werr, "stderr", stderr.String())
		return fmt.Errorf("export helper failed (%v): %s", werr, strings.TrimSpace(stderr.String()))
	}
	if err := sc.Err(); err != nil {
		// Events after an unreadable line were lost: the run's result is
		// not known.
		return fmt.Errorf("read the helper's report: %w", err)
	}
	return nil
}

// removeTemp removes a task's temporary archive, as its owner.
func (a *Agent) removeTemp(ctx context.Context, u *userpodman.User, r *taskstore.Record) error {
	spec := export.Spec{Op: export.OpRemove, Root: r.Root, Dir: r.Dir, Temp: r.Temp}
	return a.runHelper(ctx, u, spec, func(export.Event) {})
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

// runTaskHelper runs a helper for task r and returns its done event: its
// warnings go into the task, its progress events to progress, which runs
// with the agent's lock held (readers of the live task take it too).
func (a *Agent) runTaskHelper(ctx context.Context, u *userpodman.User, spec export.Spec, r *taskstore.Record, progress func(export.Event)) (export.Event, error) {
	var done export.Event
	err := a.runHelper(ctx, u, spec, func(ev export.Event) {
		switch ev.Event {
		case export.EventProgress:
			a.mu.Lock()
			progress(ev)
			a.mu.Unlock()
		case export.EventWarning:
			a.update(r, func(r *taskstore.Record) { r.Warnings = append(r.Warnings, ev.Message) })
		case export.EventDone:
			done = ev
		}
	})
	return done, err
}
