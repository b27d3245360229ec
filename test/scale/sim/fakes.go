package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/baicommit/baicommit/agent"
	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/agent/podman"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archives"
	"github.com/baicommit/baicommit/internal/identity"
)

// podmans is every user's Podman on one simulated node, as the plan lays
// them out (agent.Podmans). It answers at once: real Podman's own time is
// not what the simulation measures.
type podmans struct {
	node string
	mu   sync.Mutex
	// containers by owner, then by name.
	containers map[string]map[string]*podman.Container
	created    time.Time
}

func newPodmans(p *Plan, node string) *podmans {
	f := &podmans{node: node, containers: map[string]map[string]*podman.Container{}, created: time.Now().Add(-time.Hour)}
	for _, s := range p.Sessions {
		if s.Node != node {
			continue
		}
		if f.containers[s.User] == nil {
			f.containers[s.User] = map[string]*podman.Container{}
		}
		state := "exited"
		if s.Running {
			state = "running"
		}
		labels := map[string]string{}
		if s.Job != "" {
			labels[api.LabelJob] = s.Job
		}
		f.containers[s.User][s.Name] = &podman.Container{ID: ContainerID(node, s.User, s.Name), Name: s.Name,
			ImageName: "localhost/busybox:latest", State: state, Running: s.Running, Labels: labels}
	}
	return f
}

// ContainerID is the id of a simulated container.
func ContainerID(node, user, name string) string {
	sum := sha256.Sum256([]byte(node + "/" + user + "/" + name))
	return hex.EncodeToString(sum[:])
}

func (f *podmans) Connect(_ context.Context, u *identity.User) (agent.Podman, error) {
	return &userPodman{f: f, owner: u.Name}, nil
}

type userPodman struct {
	f     *podmans
	owner string
}

func (p *userPodman) find(nameOrID string) (*podman.Container, error) {
	for _, c := range p.f.containers[p.owner] {
		if c.Name == nameOrID || strings.HasPrefix(c.ID, nameOrID) {
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", podman.ErrNoSuchContainer, nameOrID)
}

func (p *userPodman) Inspect(_ context.Context, nameOrID string) (*podman.Container, error) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	c, err := p.find(nameOrID)
	if err != nil {
		return nil, err
	}
	cp := *c
	return &cp, nil
}

func (p *userPodman) List(_ context.Context, label string) ([]podman.Summary, error) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	k, v, _ := strings.Cut(label, "=")
	out := []podman.Summary{}
	for _, c := range p.f.containers[p.owner] {
		if label != "" && c.Labels[k] != v {
			continue
		}
		out = append(out, podman.Summary{ID: c.ID, Names: []string{c.Name}, Image: c.ImageName, State: c.State,
			Created: p.f.created, Labels: c.Labels})
	}
	return out, nil
}

func (p *userPodman) Store(context.Context) (podman.Store, error) {
	return podman.Store{GraphRoot: "/nonexistent/" + p.owner, RunRoot: "/nonexistent/run", Driver: "vfs"}, nil
}

func (p *userPodman) Commit(_ context.Context, id string, _ podman.CommitOptions) (string, error) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if _, err := p.find(id); err != nil {
		return "", err
	}
	return "sha256:" + ContainerID(p.f.node, p.owner, id+time.Now().String()), nil
}

func (p *userPodman) ImageSize(context.Context, string) (int64, error) { return 4 << 20, nil }
func (p *userPodman) Stop(context.Context, string) error               { return nil }
func (p *userPodman) TagImage(context.Context, string, string) error   { return nil }
func (p *userPodman) RemoveImage(context.Context, string) error        { return nil }
func (p *userPodman) Pause(context.Context, string) error              { return nil }
func (p *userPodman) Unpause(context.Context, string) error            { return nil }
func (p *userPodman) Exec(context.Context, string, []string) (int, string, error) {
	return 0, "", nil
}

// helpers stands in for the owner-side helper (agent.Helpers) on the
// simulated shared filesystem, a directory of this machine: an archive is
// an empty file and its sidecar, owned by the user as the real helper
// writes them; a list reads the sidecars with the real helper's code
// (package archives).
type helpers struct{}

func (helpers) Run(ctx context.Context, u *identity.User, spec messages.Spec, emit func(messages.Event)) error {
	switch spec.Op {
	case messages.OpFreeze, messages.OpArchiveImage:
		// A direct freeze and the commit path's export write the same
		// files; what reading containers-storage costs is not simulated.
		return writeArchive(u, spec, emit)
	case messages.OpList:
		entries, warnings, err := archives.List(ctx, spec.Dir, u.UID)
		if errors.Is(err, fs.ErrNotExist) {
			entries, warnings, err = nil, nil, nil
		}
		if err != nil {
			return err
		}
		for _, w := range warnings {
			emit(messages.Event{Event: messages.EventWarning, Message: w})
		}
		for i := range entries {
			if spec.Limit > 0 && i == spec.Limit {
				break
			}
			emit(messages.Event{Event: messages.EventArchive, Archive: &entries[i]})
		}
		emit(messages.Event{Event: messages.EventDone, Size: int64(len(entries))})
		return nil
	case messages.OpRemove:
		if spec.Temp != "" {
			_ = os.Remove(filepath.Join(spec.Dir, spec.Temp))
		}
		emit(messages.Event{Event: messages.EventDone})
		return nil
	}
	return fmt.Errorf("the simulation does not do %q", spec.Op)
}

// emptySHA256 is the digest of the empty archive a simulated freeze
// writes.
var emptySHA256 = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:]) }()

func writeArchive(u *identity.User, spec messages.Spec, emit func(messages.Event)) error {
	if err := mkdirOwned(spec.Root, spec.Dir, u); err != nil {
		return err
	}
	emit(messages.Event{Event: messages.EventProgress, Read: 1 << 20, Written: 0})
	sc := spec.Sidecar
	sc.Archive, sc.SHA256, sc.Size = spec.Name, emptySHA256, 0
	b, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{spec.Name, nil}, {spec.SidecarName, b}} {
		p := filepath.Join(spec.Dir, f.name)
		if err := os.WriteFile(p, f.data, 0o600); err != nil {
			return err
		}
		if err := chown(p, u); err != nil {
			return err
		}
	}
	emit(messages.Event{Event: messages.EventDone, Read: 1 << 20, Written: 0, SHA256: emptySHA256, Size: 0})
	return nil
}

// mkdirOwned creates dir below root, each new directory owned by u.
func mkdirOwned(root, dir string, u *identity.User) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("%s is not below %s", dir, root)
	}
	cur := root
	for _, part := range strings.Split(rel, "/") {
		if part == "." {
			continue
		}
		cur = filepath.Join(cur, part)
		err := os.Mkdir(cur, 0o700)
		switch {
		case err == nil:
			if err := chown(cur, u); err != nil {
				return err
			}
		case !errors.Is(err, fs.ErrExist):
			return err
		}
	}
	return nil
}

// chown gives p to u when the simulation runs as root (always, but for
// its unit tests).
func chown(p string, u *identity.User) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Lchown(p, u.UID, u.GID)
}
