package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/baicommit/baicommit/agent/podman"
)

// timedPodman gives every call to a user's Podman a deadline: the user
// runs that service (or a socket of their own in its place) and could make
// it answer nothing, ever. The commit is bounded by its task's deadline
// instead, which fits a large freeze. The embedded Podman answers what is
// not listed here (bounded by its caller's context alone).
type timedPodman struct {
	Podman
	p Podman
	d time.Duration
}

// errPodmanTimeout is how a call that ran out of time fails.
var errPodmanTimeout = errors.New("the user's Podman did not answer in time")

func (t timedPodman) call(ctx context.Context, d time.Duration, what string, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := f(ctx)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s took longer than %s (podman_timeout): %v", errPodmanTimeout, what, d, err)
	}
	return err
}

func (t timedPodman) Inspect(ctx context.Context, nameOrID string) (c *podman.Container, err error) {
	err = t.call(ctx, t.d, "inspect", func(ctx context.Context) error { c, err = t.p.Inspect(ctx, nameOrID); return err })
	return c, err
}

func (t timedPodman) List(ctx context.Context, label string) (l []podman.Summary, err error) {
	err = t.call(ctx, t.d, "listing the containers", func(ctx context.Context) error { l, err = t.p.List(ctx, label); return err })
	return l, err
}

func (t timedPodman) Store(ctx context.Context) (s podman.Store, err error) {
	err = t.call(ctx, t.d, "info", func(ctx context.Context) error { s, err = t.p.Store(ctx); return err })
	return s, err
}

// Commit is bounded by ctx alone: the task's deadline.
func (t timedPodman) Commit(ctx context.Context, id string, o podman.CommitOptions) (string, error) {
	return t.p.Commit(ctx, id, o)
}

// Pause and Unpause have the deadline of any call: a container left paused
// because its owner's Podman stopped answering is unpaused when the agent
// next starts (Record.Paused).
func (t timedPodman) Pause(ctx context.Context, id string) error {
	return t.call(ctx, t.d, "pausing the container", func(ctx context.Context) error { return t.p.Pause(ctx, id) })
}

func (t timedPodman) Unpause(ctx context.Context, id string) error {
	return t.call(ctx, t.d, "unpausing the container", func(ctx context.Context) error { return t.p.Unpause(ctx, id) })
}

// Exec is bounded by ctx alone: the command's own before_freeze_timeout,
// which may be longer than podman_timeout.
func (t timedPodman) Exec(ctx context.Context, id string, argv []string) (int, string, error) {
	return t.p.Exec(ctx, id, argv)
}

func (t timedPodman) ImageSize(ctx context.Context, id string) (n int64, err error) {
	err = t.call(ctx, t.d, "image size", func(ctx context.Context) error { n, err = t.p.ImageSize(ctx, id); return err })
	return n, err
}

// Stop waits for the container's own stop timeout as well.
func (t timedPodman) Stop(ctx context.Context, id string) error {
	return t.call(ctx, 2*t.d, "stopping the container", func(ctx context.Context) error { return t.p.Stop(ctx, id) })
}

func (t timedPodman) TagImage(ctx context.Context, id, name string) error {
	return t.call(ctx, t.d, "tagging the image", func(ctx context.Context) error { return t.p.TagImage(ctx, id, name) })
}

func (t timedPodman) RemoveImage(ctx context.Context, id string) error {
	return t.call(ctx, t.d, "removing the image", func(ctx context.Context) error { return t.p.RemoveImage(ctx, id) })
}
