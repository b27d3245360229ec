package agent

import (
	"context"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/agent/podman"
	"github.com/baicommit/baicommit/internal/identity"
)

// Podman is what the agent asks of one user's Podman service. Package
// podman implements it with Podman's bindings; the agent's unit tests use
// a fake, so that authorization, placement, the pause fallback and
// queueing are tested without a Podman.
type Podman interface {
	// Inspect returns one container (podman.ErrNoSuchContainer if none).
	Inspect(ctx context.Context, nameOrID string) (*podman.Container, error)
	// List returns every container, or those with label ("key=value").
	List(ctx context.Context, label string) ([]podman.Summary, error)
	// Store says where the service keeps its images.
	Store(ctx context.Context) (podman.Store, error)
	// Commit makes an image of a container and returns its id
	// (podman.ErrCannotPause when asked to pause and it cannot).
	Commit(ctx context.Context, id string, o podman.CommitOptions) (string, error)
	ImageSize(ctx context.Context, id string) (int64, error)
	// Pause and Unpause freeze and thaw a running container's processes
	// (podman.ErrCannotPause where the runtime cannot).
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	// Exec runs argv in a running container as its user and returns its
	// exit code and the end of its output (podman.ErrExecTimeout when ctx
	// ends first; the command is killed).
	Exec(ctx context.Context, id string, argv []string) (int, string, error)
	Stop(ctx context.Context, id string) error
	TagImage(ctx context.Context, id, name string) error
	RemoveImage(ctx context.Context, id string) error
}

// Podmans reaches users' Podman services.
type Podmans interface {
	// Connect returns u's Podman, starting a service for u if need be.
	Connect(ctx context.Context, u *identity.User) (Podman, error)
}

// Helpers runs the owner-side helper (package asowner) as a user: every
// byte of a user's files is read and written by it, never by the agent.
type Helpers interface {
	// Run carries out spec as u and passes each event the helper reports
	// to onEvent; a helper's own error event is returned as a
	// *HelperError.
	Run(ctx context.Context, u *identity.User, spec messages.Spec, onEvent func(messages.Event)) error
}

// Loader loads an archive into a user's Podman, read by that user's own
// podman (keep_image).
type Loader interface {
	Load(ctx context.Context, u *identity.User, archive string) error
}

// connector adapts package podman's Connector to Podmans.
type connector struct{ c *podman.Connector }

func (c connector) Connect(ctx context.Context, u *identity.User) (Podman, error) {
	return c.c.Connect(ctx, u)
}
