package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/agent/podman"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
)

// accounts is a fixed account table.
type accounts map[string]*identity.User

func (a accounts) Lookup(nameOrUID string) (*identity.User, error) {
	for _, u := range a {
		if u.Name == nameOrUID || strconv.Itoa(u.UID) == nameOrUID {
			return u, nil
		}
	}
	return nil, fmt.Errorf("%w %q", identity.ErrUnknownUser, nameOrUID)
}

// testAccounts: alice and bob are users, carol is in the admin group.
func testAccounts() accounts {
	return accounts{
		"root":  {UID: 0, GID: 0, Name: "root", Home: "/root"},
		"alice": {UID: 1000, GID: 1000, Name: "alice", Home: "/home/alice", GroupNames: []string{"alice", "users"}, Group: "alice"},
		"bob":   {UID: 1001, GID: 1001, Name: "bob", Home: "/home/bob", GroupNames: []string{"bob", "users"}},
		"carol": {UID: 1002, GID: 1002, Name: "carol", Home: "/home/carol", GroupNames: []string{"carol", "hpcadmin"}},
	}
}

// fakePodmans is every user's Podman: containers by owner.
type fakePodmans struct {
	mu sync.Mutex
	// containers are each user's containers by name.
	containers map[string]map[string]*podman.Container
	// cannotPause makes a pause fail as rootless cgroup v1 does.
	cannotPause bool
	commits     []podman.CommitOptions
	// paused and unpaused record Pause and Unpause calls by container id.
	paused, unpaused []string
	// execs records Exec calls; exec, when set, answers them.
	execs     [][]string
	exec      func(argv []string) (int, string, error)
	removed   []string
	tagged    [][2]string
	nextImage int
	// down makes Connect fail.
	down bool
	// commitHook, when set, runs before each commit (and may block until
	// ctx ends, as a Podman that never answers).
	commitHook func(ctx context.Context, owner string) error
}

func newFakePodmans() *fakePodmans {
	return &fakePodmans{containers: map[string]map[string]*podman.Container{}}
}

// add gives owner a running container.
func (f *fakePodmans) add(owner, name string, labels map[string]string) *podman.Container {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.containers[owner] == nil {
		f.containers[owner] = map[string]*podman.Container{}
	}
	id := fmt.Sprintf("%064x", len(f.containers[owner])+1000*len(f.containers)+1)
	c := &podman.Container{ID: id, Name: name, ImageName: "localhost/busybox:latest", State: "running", Running: true, Labels: labels}
	f.containers[owner][name] = c
	return c
}

func (f *fakePodmans) Connect(_ context.Context, u *identity.User) (Podman, error) {
	if f.down {
		return nil, fmt.Errorf("%w: no socket", podman.ErrUnavailable)
	}
	return &fakePodman{f: f, owner: u.Name}, nil
}

type fakePodman struct {
	f     *fakePodmans
	owner string
}

func (p *fakePodman) find(nameOrID string) (*podman.Container, error) {
	for _, c := range p.f.containers[p.owner] {
		if c.Name == nameOrID || strings.HasPrefix(c.ID, nameOrID) {
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", podman.ErrNoSuchContainer, nameOrID)
}

func (p *fakePodman) Inspect(_ context.Context, nameOrID string) (*podman.Container, error) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	c, err := p.find(nameOrID)
	if err != nil {
		return nil, err
	}
	cp := *c
	return &cp, nil
}

func (p *fakePodman) List(_ context.Context, label string) ([]podman.Summary, error) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	var out []podman.Summary
	k, v, _ := strings.Cut(label, "=")
	for _, c := range p.f.containers[p.owner] {
		if label != "" && c.Labels[k] != v {
			continue
		}
		out = append(out, podman.Summary{ID: c.ID, Names: []string{c.Name}, Image: c.ImageName, State: c.State, Labels: c.Labels})
	}
	return out, nil
}

func (p *fakePodman) Store(context.Context) (podman.Store, error) {
	return podman.Store{GraphRoot: "/home/" + p.owner + "/.local/share/containers/storage", RunRoot: "/tmp/run", Driver: "vfs"}, nil
}

func (p *fakePodman) Commit(ctx context.Context, id string, o podman.CommitOptions) (string, error) {
	p.f.mu.Lock()
	hook := p.f.commitHook
	p.f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, p.owner); err != nil {
			return "", err
		}
	}
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if _, err := p.find(id); err != nil {
		return "", err
	}
	p.f.commits = append(p.f.commits, o)
	if o.Pause && p.f.cannotPause {
		return "", fmt.Errorf("%w: can not pause containers on rootless containers with cgroup V1", podman.ErrCannotPause)
	}
	p.f.nextImage++
	return fmt.Sprintf("image%d", p.f.nextImage), nil
}

func (p *fakePodman) ImageSize(context.Context, string) (int64, error) { return 4 << 20, nil }

func (p *fakePodman) Pause(_ context.Context, id string) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	c, err := p.find(id)
	if err != nil {
		return err
	}
	if p.f.cannotPause {
		return fmt.Errorf("%w: can not pause containers on rootless containers with cgroup V1", podman.ErrCannotPause)
	}
	c.State = "paused"
	p.f.paused = append(p.f.paused, c.ID)
	return nil
}

func (p *fakePodman) Unpause(_ context.Context, id string) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	c, err := p.find(id)
	if err != nil {
		return err
	}
	c.State = "running"
	p.f.unpaused = append(p.f.unpaused, c.ID)
	return nil
}

func (p *fakePodman) Exec(_ context.Context, id string, argv []string) (int, string, error) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if _, err := p.find(id); err != nil {
		return -1, "", err
	}
	p.f.execs = append(p.f.execs, argv)
	if p.f.exec != nil {
		return p.f.exec(argv)
	}
	return 0, "", nil
}

// calls returns copies of the recorded calls.
func (f *fakePodmans) calls() (commits []podman.CommitOptions, paused, unpaused, removed []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.commits), slices.Clone(f.paused), slices.Clone(f.unpaused), slices.Clone(f.removed)
}

func (p *fakePodman) Stop(_ context.Context, id string) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	c, err := p.find(id)
	if err != nil {
		return err
	}
	c.State, c.Running = "exited", false
	return nil
}

func (p *fakePodman) TagImage(_ context.Context, id, name string) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	p.f.tagged = append(p.f.tagged, [2]string{id, name})
	return nil
}

func (p *fakePodman) RemoveImage(_ context.Context, id string) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	p.f.removed = append(p.f.removed, id)
	return nil
}

// fakeHelpers runs helper specs in-process.
type fakeHelpers struct {
	mu   sync.Mutex
	runs []messages.Spec
	// run carries out one spec; nil reports done with a small archive.
	run func(u *identity.User, spec messages.Spec, emit func(messages.Event)) error
	// prune and usage answer OpPrune and OpUsage (nil: nothing to remove,
	// nothing kept).
	prune func(spec messages.Spec, emit func(messages.Event)) error
	usage *api.Usage
	// runCtx is run for helpers that heed their context (a real one is
	// killed when it ends).
	runCtx func(ctx context.Context, u *identity.User, spec messages.Spec, emit func(messages.Event)) error
}

func (h *fakeHelpers) Run(ctx context.Context, u *identity.User, spec messages.Spec, emit func(messages.Event)) error {
	h.mu.Lock()
	h.runs = append(h.runs, spec)
	run, runCtx := h.run, h.runCtx
	h.mu.Unlock()
	if runCtx != nil {
		return runCtx(ctx, u, spec, emit)
	}
	switch spec.Op {
	case messages.OpPrune:
		// Retention after every freeze: nothing to remove here.
		if h.prune != nil {
			return h.prune(spec, emit)
		}
		emit(messages.Event{Event: messages.EventDone, Prune: &api.PruneResult{Dir: spec.Dir, Removed: []api.ArchiveEntry{}}})
		return nil
	case messages.OpUsage:
		u := h.usage
		if u == nil {
			u = &api.Usage{Dir: spec.Dir}
		}
		emit(messages.Event{Event: messages.EventDone, Usage: u})
		return nil
	}
	if run != nil {
		return run(u, spec, emit)
	}
	emit(messages.Event{Event: messages.EventProgress, Read: 1 << 20, Written: 1 << 19})
	emit(messages.Event{Event: messages.EventDone, Read: 2 << 20, Written: 1 << 20, SHA256: strings.Repeat("ab", 32), Size: 1 << 20})
	return nil
}

// specs are the helper runs so far but the prunes and usages.
func (h *fakeHelpers) specs() []messages.Spec {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []messages.Spec
	for _, s := range h.runs {
		if s.Op != messages.OpPrune && s.Op != messages.OpUsage {
			out = append(out, s)
		}
	}
	return out
}

// ops are the operations of all the helper runs so far.
func (h *fakeHelpers) ops() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, s := range h.runs {
		out = append(out, s.Op)
	}
	return out
}

// testAgent is an agent on fakes, with its state in a temporary directory.
type testAgent struct {
	*Agent
	podmans *fakePodmans
	helpers *fakeHelpers
	cfg     Config
}

func testConfig(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName = "n1"
	cfg.StateDir = t.TempDir()
	cfg.SavePath = "/srv/bc/{user}"
	cfg.Admins = identity.Admins{Groups: []string{"hpcadmin"}}
	assert.NilError(t, cfg.Validate())
	return cfg
}

func newTestAgent(t *testing.T, cfg Config, podmans *fakePodmans, helpers *fakeHelpers) *testAgent {
	t.Helper()
	a, err := New(cfg, Deps{Podman: podmans, Helpers: helpers, Accounts: testAccounts(), Loader: noLoader{}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	assert.NilError(t, err)
	t.Cleanup(func() { a.Close() })
	return &testAgent{Agent: a, podmans: podmans, helpers: helpers, cfg: cfg}
}

// caller is who a unix socket would say uid is.
func (ta *testAgent) caller(name string) Caller {
	u := testAccounts()[name]
	return identity.NewCaller(testAccounts(), ta.cfg.Admins, u.UID)
}

// noLoader refuses to load kept images.
type noLoader struct{}

func (noLoader) Load(context.Context, *identity.User, string) error {
	return fmt.Errorf("no Podman to load into here")
}
