// Package podman reaches a user's rootless Podman API from the root agent:
// the user's standard socket when it answers, otherwise a transient
// `podman system service` started as that user on a private socket, which
// exits by itself when idle. It is the only package of the agent that
// talks to Podman (through Podman's Go bindings); the agent consumes it
// through the small interface it defines (agent.Podman), so that the
// freeze path is tested without a Podman.
package podman

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containers/podman/v5/libpod/define"
	"github.com/containers/podman/v5/pkg/api/handlers"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/images"
	"github.com/containers/podman/v5/pkg/bindings/system"
	"github.com/containers/podman/v5/pkg/errorhandling"
	"go.podman.io/image/v5/docker/reference"

	"github.com/baicommit/baicommit/agent/runas"
	"github.com/baicommit/baicommit/internal/identity"
)

// ErrNoSuchContainer means Podman has no such container (any more).
var ErrNoSuchContainer = errors.New("no such container")

// ErrCannotPause means the runtime cannot pause the container: rootless
// on cgroup v1, where there is no freezer the user may use.
var ErrCannotPause = errors.New("the container cannot be paused")

// Container is what the agent needs to know of one container.
type Container struct {
	ID   string
	Name string
	// ImageName is the image the container was created from, as given.
	ImageName string
	// State is Podman's status word: running, exited, created, paused, …
	State   string
	Running bool
	// ExitCode and FinishedAt are set once the container has exited.
	ExitCode   int
	FinishedAt time.Time
	Labels     map[string]string

	// What a freeze carries into the image config, as libpod's commit
	// does: the container's entrypoint, command, environment, working
	// directory and user; its ports ("PORT/PROTO") and the destinations of
	// its anonymous volumes.
	Entrypoint, Cmd, Env []string
	WorkingDir, User     string
	ExposedPorts         []string
	AnonymousVolumes     []string
	// Mounts are the container paths something is mounted on.
	Mounts []string
}

// Summary is one container of a list.
type Summary struct {
	ID      string
	Names   []string
	Image   string
	State   string
	Created time.Time
	Labels  map[string]string
	// AutoRemove says it was started with --rm.
	AutoRemove bool
}

// Store says where the user's Podman keeps its images and containers.
type Store struct {
	GraphRoot, RunRoot, Driver string
}

// CommitOptions are the settings of a commit.
type CommitOptions struct {
	// Changes are Dockerfile instructions applied to the image (LABEL …).
	Changes []string
	Comment string
	// Pause pauses a running container for the commit.
	Pause bool
}

// Service is one user's Podman API, reached through a connection whose
// every socket was checked to be served by that user.
type Service struct {
	conn   context.Context // the bindings' connection
	socket string
	// dial connects to the service, checking who serves it.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Socket is the unix socket the service answers on.
func (s *Service) Socket() string { return s.socket }

// call is the context of one bindings call: the connection that the
// bindings keep in a context value, with ctx's deadline and cancellation.
func (s *Service) call(ctx context.Context) context.Context { return valuesOf{ctx, s.conn} }

// valuesOf is ctx with the values of another context.
type valuesOf struct {
	context.Context
	values context.Context
}

func (v valuesOf) Value(key any) any { return v.values.Value(key) }

// Inspect returns one container by name or id.
func (s *Service) Inspect(ctx context.Context, nameOrID string) (*Container, error) {
	d, err := containers.Inspect(s.call(ctx), nameOrID, nil)
	if err != nil {
		return nil, notFound(err)
	}
	c := &Container{ID: d.ID, Name: strings.TrimPrefix(d.Name, "/"), ImageName: d.ImageName}
	if d.State != nil {
		c.State, c.Running = d.State.Status, d.State.Running
		c.ExitCode, c.FinishedAt = int(d.State.ExitCode), d.State.FinishedAt
	}
	if d.Config != nil {
		c.Labels = d.Config.Labels
		c.Entrypoint, c.Cmd, c.Env = d.Config.Entrypoint, d.Config.Cmd, createdEnv(d.Config.Env, d.Config.Hostname)
		if len(c.Entrypoint) == 1 && c.Entrypoint[0] == "" {
			// Podman 4 says "no entrypoint" as an empty string.
			c.Entrypoint = nil
		}
		c.WorkingDir, c.User = d.Config.WorkingDir, d.Config.User
		for p := range d.Config.ExposedPorts {
			c.ExposedPorts = append(c.ExposedPorts, p)
		}
	}
	if d.HostConfig != nil {
		for p := range d.HostConfig.PortBindings {
			if !slices.Contains(c.ExposedPorts, p) {
				c.ExposedPorts = append(c.ExposedPorts, p)
			}
		}
	}
	slices.Sort(c.ExposedPorts)
	for _, m := range d.Mounts {
		c.Mounts = append(c.Mounts, m.Destination)
		if m.Type == "volume" && anonymousVolume.MatchString(m.Name) {
			c.AnonymousVolumes = append(c.AnonymousVolumes, m.Destination)
		}
	}
	return c, nil
}

// createdEnv is a container's environment as it was created, from what
// inspect shows of a running one: without the HOSTNAME and the empty HOME
// the runtime adds when it starts it (libpod's commit, reading the
// creation config, has neither; an image must not carry a hostname).
func createdEnv(env []string, hostname string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if kv == "HOSTNAME="+hostname || kv == "HOME=" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// anonymousVolume is how Podman names the volumes it makes for a -v
// without a name: 64 hex digits.
var anonymousVolume = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Pause freezes a running container's processes (ErrCannotPause where the
// runtime cannot: rootless on cgroup v1).
func (s *Service) Pause(ctx context.Context, id string) error {
	err := containers.Pause(s.call(ctx), id, nil)
	if err != nil && cannotPause(err) {
		return fmt.Errorf("%w: %v", ErrCannotPause, err)
	}
	return notFound(err)
}

// Unpause lets a paused container run again.
func (s *Service) Unpause(ctx context.Context, id string) error {
	return notFound(containers.Unpause(s.call(ctx), id, nil))
}

// List returns every container (running or not), or with label set only
// those carrying that label ("key=value").
func (s *Service) List(ctx context.Context, label string) ([]Summary, error) {
	opts := new(containers.ListOptions).WithAll(true)
	if label != "" {
		opts = opts.WithFilters(map[string][]string{"label": {label}})
	}
	list, err := containers.List(s.call(ctx), opts)
	if err != nil {
		return nil, err
	}
	out := make([]Summary, 0, len(list))
	for _, c := range list {
		out = append(out, Summary{ID: c.ID, Names: c.Names, Image: c.Image, State: c.State,
			Created: c.Created, Labels: c.Labels, AutoRemove: c.AutoRemove})
	}
	return out, nil
}

// Store asks Podman where its storage is.
func (s *Service) Store(ctx context.Context) (Store, error) {
	info, err := system.Info(s.call(ctx), nil)
	if err != nil {
		return Store{}, err
	}
	return storeOf(info), nil
}

func storeOf(info *define.Info) Store {
	if info.Store == nil {
		return Store{}
	}
	return Store{GraphRoot: info.Store.GraphRoot, RunRoot: info.Store.RunRoot, Driver: info.Store.GraphDriverName}
}

// Commit commits the container into a new image in docker format and
// returns its id. ErrCannotPause means it asked to pause and could not:
// nothing was made.
func (s *Service) Commit(ctx context.Context, id string, o CommitOptions) (string, error) {
	opts := new(containers.CommitOptions).WithChanges(o.Changes).WithFormat("docker").
		WithComment(o.Comment).WithPause(o.Pause)
	res, err := containers.Commit(s.call(ctx), id, opts)
	switch {
	case err == nil:
		return res.ID, nil
	case o.Pause && cannotPause(err):
		return "", fmt.Errorf("%w: %v", ErrCannotPause, err)
	}
	return "", notFound(err)
}

func cannotPause(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "pause") && (strings.Contains(msg, "cgroup") || strings.Contains(msg, "rootless"))
}

// ImageSize is the size of an image in the store.
func (s *Service) ImageSize(ctx context.Context, id string) (int64, error) {
	img, err := images.GetImage(s.call(ctx), id, nil)
	if err != nil {
		return 0, err
	}
	return img.Size, nil
}

// Stop stops a container, with its own stop timeout between the stop
// signal and SIGKILL, as `podman stop` does.
func (s *Service) Stop(ctx context.Context, id string) error {
	return notFound(containers.Stop(s.call(ctx), id, nil))
}

// TagImage gives image id the name:tag name.
func (s *Service) TagImage(ctx context.Context, id, name string) error {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return err
	}
	tagged, ok := reference.TagNameOnly(named).(reference.NamedTagged)
	if !ok {
		return fmt.Errorf("image name %q has no tag", name)
	}
	return images.Tag(s.call(ctx), id, tagged.Tag(), tagged.Name(), nil)
}

// RemoveImage removes an image.
func (s *Service) RemoveImage(ctx context.Context, id string) error {
	_, errs := images.Remove(s.call(ctx), []string{id}, nil)
	return errors.Join(errs...)
}

// notFound turns Podman's 404 into ErrNoSuchContainer.
func notFound(err error) error {
	var em *errorhandling.ErrorModel
	if errors.As(err, &em) && em.ResponseCode == 404 {
		return fmt.Errorf("%w: %v", ErrNoSuchContainer, err)
	}
	return err
}

// Loader loads archives into users' Podman with their own podman command,
// run as them: the agent never reads the archive.
type Loader struct {
	// Podman is the podman binary.
	Podman string
}

// Load runs `podman load -i archive` as u, or, for an image layout of a
// layer store (archive "oci:PATH:REF"), `podman pull` of it named REF.
func (l Loader) Load(ctx context.Context, u *identity.User, archive string) error {
	if rest, ok := strings.CutPrefix(archive, "oci:"); ok {
		path, ref, _ := strings.Cut(rest, ":")
		return l.pullLayout(ctx, u, path, ref)
	}
	_, err := l.run(ctx, u, "load", "-q", "-i", archive)
	return err
}

// pullLayout pulls the layout at path as u and names the image ref.
// Podman 4.3 names an image pulled from a layout after the layout's path,
// which must then be a valid image name: it pulls through a link of such
// a name (the agent's own directory; the link is only ever followed by
// u's podman), and that name is dropped again.
func (l Loader) pullLayout(ctx context.Context, u *identity.User, path, ref string) error {
	tmp, err := os.MkdirTemp("", "baicommit-keep-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	link := filepath.Join(tmp, "image")
	if err := os.Symlink(path, link); err != nil {
		return err
	}
	out, err := l.run(ctx, u, "pull", "-q", "oci:"+link)
	if err != nil {
		return err
	}
	id := strings.TrimSpace(out)
	if i := strings.LastIndexByte(id, '\n'); i >= 0 {
		id = id[i+1:]
	}
	if _, err := l.run(ctx, u, "tag", id, ref); err != nil {
		return err
	}
	_, _ = l.run(ctx, u, "rmi", "localhost"+link+":latest")
	return nil
}

// run runs podman args as u and returns its standard output.
func (l Loader) run(ctx context.Context, u *identity.User, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, l.Podman, args...)
	cmd.Dir = "/"
	cmd.Env = append(runas.Env(u), runas.RuntimeDirEnv(u)...)
	cmd.SysProcAttr = runas.Credentials(u)
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b := stderr.Bytes()
		return "", fmt.Errorf("podman %s: %v: %s", args[0], err, strings.TrimSpace(string(b[max(0, len(b)-2000):])))
	}
	return stdout.String(), nil
}

// ErrExecTimeout means a command run in a container did not end in time.
var ErrExecTimeout = errors.New("did not end in time")

// ExecTimeoutError is how Exec reports a command that did not end in
// time (errors.Is ErrExecTimeout). PID is its process as the user's Podman
// reports it, 0 if unknown: the caller ends it, with the owner's rights
// alone, since a pid from a user's Podman may name anyone's process.
type ExecTimeoutError struct{ PID int }

func (e *ExecTimeoutError) Error() string        { return ErrExecTimeout.Error() }
func (e *ExecTimeoutError) Is(target error) bool { return target == ErrExecTimeout }

// maxExecOutput is how much of a command's output is kept: its end.
const maxExecOutput = 16 << 10

// Exec runs argv in a running container, as its user, and returns its
// exit code and the end of what it printed. When ctx ends first it
// returns an *ExecTimeoutError naming the command's process.
func (s *Service) Exec(ctx context.Context, id string, argv []string) (int, string, error) {
	cfg := new(handlers.ExecCreateConfig)
	cfg.Cmd, cfg.AttachStdout, cfg.AttachStderr = argv, true, true
	// Creating and inspecting a session answers at once; only the
	// command itself runs until ctx ends.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	sid, err := containers.ExecCreate(s.call(bg), id, cfg)
	if err != nil {
		return 0, "", notFound(err)
	}
	// Attaching hijacks a connection of the bindings' own transport, which
	// the bounded one of every other call is not: the attach gets a
	// connection of its own (checked like every other), and the output
	// is bounded by keeping only its end.
	attach, closeAttach, err := s.rawConnection(bg)
	if err != nil {
		return 0, "", err
	}
	// Whatever happens, the attach ends with Exec: a Podman that keeps the
	// stream open after the command ended (or was killed) holds nothing.
	defer closeAttach()
	out := &tail{max: maxExecOutput}
	var w io.Writer = out
	done := make(chan error, 1)
	go func() {
		defer func() {
			// A panic in the bindings must not end the root agent.
			if p := recover(); p != nil {
				done <- fmt.Errorf("attach to the command: %v", p)
			}
		}()
		opts := new(containers.ExecStartAndAttachOptions).WithOutputStream(w).WithErrorStream(w).
			WithAttachOutput(true).WithAttachError(true)
		done <- containers.ExecStartAndAttach(valuesOf{context.WithoutCancel(ctx), attach}, sid, opts)
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		e := &ExecTimeoutError{}
		if insp, ierr := containers.ExecInspect(s.call(bg), sid, nil); ierr == nil && insp.Running && insp.Pid > 1 {
			e.PID = insp.Pid
		}
		return -1, out.String(), e
	}
	if err != nil {
		return -1, out.String(), err
	}
	insp, err := containers.ExecInspect(s.call(bg), sid, nil)
	if err != nil {
		return -1, out.String(), err
	}
	return insp.ExitCode, out.String(), nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.ToValidUTF8(string(t.b), "?")
}
