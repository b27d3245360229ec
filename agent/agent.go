package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/baicommit/baicommit/agent/podman"
	"github.com/baicommit/baicommit/agent/runas"
	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
)

// Caller is who sent a request, as the transport proved it.
type Caller = identity.Caller

// Agent freezes containers on this node.
type Agent struct {
	cfg      Config
	store    *taskstore.Store
	podman   Podmans
	helpers  Helpers
	loader   Loader
	accounts identity.Accounts
	// manager checks requests relayed by baicommit-manager.
	manager *managerAuth
	log     *slog.Logger
	// Activity counts requests and tasks in flight, for the idle exit.
	Activity *Activity

	ctx    context.Context // ends running tasks when the agent stops
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// sched shares the freeze slots between users (schedule.go).
	sched *scheduler

	mu   sync.Mutex
	live map[string]*taskstore.Record // running tasks by id, with progress
	busy map[busyKey]string           // owner and container → running task id
}

// busyKey names a container by its owner and its id: the id comes from
// the owner's Podman, which the owner controls, so alone it could name
// anyone's container.
type busyKey struct {
	uid int
	id  string
}

// Deps are what the agent reaches outside itself. The zero value of each
// field means the real thing; tests put fakes there.
type Deps struct {
	// Podman reaches users' Podman services (default: package podman).
	Podman Podmans
	// Helpers runs the owner-side helper (default: Binary, re-run as the
	// owner with `as-owner OP`).
	Helpers Helpers
	// Binary is the baicommit-agent binary (normally os.Executable()).
	Binary string
	// Accounts finds users (default: the system's, each answer
	// remembered for identity.DefaultCacheTTL).
	Accounts identity.Accounts
	// Loader loads kept images (default: the owner's podman load).
	Loader Loader
}

// New opens the task store, fails what an earlier agent left running and
// returns an agent ready to serve.
func New(cfg Config, deps Deps, log *slog.Logger) (*Agent, error) {
	if deps.Accounts == nil {
		deps.Accounts = identity.NewCache(identity.System{}, 0, 0)
	}
	if deps.Podman == nil {
		deps.Podman = connector{&podman.Connector{
			RunDir:      cfg.RunDir,
			ServiceIdle: cfg.TransientServiceIdle.Duration,
			Podman:      cfg.Podman,
			Cgroups:     runas.Cgroups{Templates: cfg.UserCgroups},
			Log:         log,
		}}
	}
	if deps.Loader == nil {
		deps.Loader = podman.Loader{Podman: cfg.Podman}
	}
	if deps.Helpers == nil {
		if deps.Binary == "" {
			return nil, errors.New("agent: no helper binary")
		}
		deps.Helpers = ownerHelper{bin: deps.Binary, log: log,
			cgroups: runas.Cgroups{Templates: cfg.UserCgroups}, threads: cfg.HelperThreads}
	}
	manager, err := newManagerAuth(cfg, deps.Accounts)
	if err != nil {
		return nil, err
	}
	store, err := taskstore.Open(cfg.StateDir, taskstore.LockTimeout)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{
		cfg:      cfg,
		store:    store,
		podman:   deps.Podman,
		helpers:  deps.Helpers,
		loader:   deps.Loader,
		accounts: deps.Accounts,
		manager:  manager,
		log:      log,
		Activity: NewActivity(),
		ctx:      ctx,
		cancel:   cancel,
		sched:    newScheduler(cfg.MaxParallel, cfg.MaxRunningPerUser, cfg.MaxQueuedPerUser),
		live:     map[string]*taskstore.Record{},
		busy:     map[busyKey]string{},
	}
	if err := a.recover(); err != nil {
		store.Close()
		cancel()
		return nil, err
	}
	if n, err := store.PruneAll(a.retention(), time.Now()); err != nil {
		log.Warn("could not prune the task store", "err", err)
	} else if n > 0 {
		log.Info("pruned finished tasks", "tasks", n)
	}
	return a, nil
}

// retention is which finished tasks the store keeps.
func (a *Agent) retention() taskstore.Retention {
	return taskstore.Retention{MaxAge: a.cfg.TaskRetention.Duration, PerUser: a.cfg.MaxTasksPerUser}
}

// Close stops running tasks (they fail with "agent stopped" and leave
// nothing behind) and closes the store.
func (a *Agent) Close() error {
	a.cancel()
	a.wg.Wait()
	return a.store.Close()
}

// recover marks tasks that were running when the previous agent died as
// failed, then removes their temporary files and images, as their owners,
// in the background: a user whose helper or Podman hangs must not keep
// the agent from serving.
func (a *Agent) recover() error {
	stale, err := a.store.List(func(r *taskstore.Record) bool { return !r.Done() })
	if err != nil {
		return fmt.Errorf("read task store: %w", err)
	}
	cleanups := make(chan struct{}, recoveryParallel)
	for _, r := range stale {
		if r.Temp != "" {
			a.wg.Add(1)
			go func(r taskstore.Record) {
				defer a.wg.Done()
				cleanups <- struct{}{}
				defer func() { <-cleanups }()
				a.removeStaleTemp(&r)
			}(*r)
		}
		if r.ImageID != "" && !a.cfg.KeepImage && r.Method != api.MethodDirect {
			a.wg.Add(1)
			go a.dropStaleImage(r.Task)
		}
		if r.Paused {
			a.wg.Add(1)
			go a.unpauseStale(r.Task)
		}
		r.State, r.Phase = api.StateFailed, ""
		r.Error = "the agent restarted while this freeze was running; no archive was written. Run the freeze again."
		if r.Push != nil && r.Push.State != api.PushSucceeded {
			r.Push.State, r.Push.Error = api.PushFailed, "the agent restarted before the push ended"
		}
		r.Finished = time.Now().UTC()
		if err := a.store.Put(r); err != nil {
			return err
		}
		a.log.Warn("failed a task interrupted by an agent restart", "task", r.ID, "container", r.Container, "owner", r.Owner)
	}
	return nil
}

// recoveryParallel is how many temporary files of interrupted tasks are
// removed at once after a restart.
const recoveryParallel = 2

// removeStaleTemp removes the temporary archive of a task an earlier agent
// did not finish.
func (a *Agent) removeStaleTemp(r *taskstore.Record) {
	u, err := a.accounts.Lookup(strconv.Itoa(r.OwnerUID))
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	if err := a.removeTemp(ctx, u, r); err != nil {
		a.log.Warn("could not remove a temporary archive", "task", r.ID, "dir", r.Dir, "err", err)
	}
}

var (
	containerRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,253}$`)
)

func newTaskID(node string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "." + node
}

// taskToken is the random part of a task id, used in file names.
func taskToken(id string) string {
	for i := range len(id) {
		if id[i] == '.' {
			return id[:i]
		}
	}
	return id
}

// Task returns one task the caller may see.
func (a *Agent) Task(c Caller, id string) (*api.Task, error) {
	r, err := a.record(id)
	if errors.Is(err, taskstore.ErrNotFound) {
		return nil, userErr(KindNotFound, "no task %q on node %s (see baicommit list)", id, a.cfg.NodeName)
	}
	if err != nil {
		return nil, err
	}
	if !a.maySee(c, &r.Task) {
		return nil, userErr(KindForbidden, "task %s belongs to %s; you can only see your own freezes", id, r.Owner)
	}
	return &r.Task, nil
}

// record returns a copy of the live record of a running task, or the
// stored one.
func (a *Agent) record(id string) (*taskstore.Record, error) {
	if r, ok := a.liveCopy(id); ok {
		return r, nil
	}
	return a.store.Get(id)
}

// liveCopy returns a deep copy of a running task's record: the running
// task keeps changing its own.
func (a *Agent) liveCopy(id string) (*taskstore.Record, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.live[id]
	if !ok {
		return nil, false
	}
	return clone(r), true
}

// clone copies r with everything it points to. Callers hold a.mu.
func clone(r *taskstore.Record) *taskstore.Record {
	cp := *r
	cp.Warnings = slices.Clone(r.Warnings)
	if r.Archive != nil {
		ar := *r.Archive
		cp.Archive = &ar
	}
	if r.Push != nil {
		p := *r.Push
		cp.Push = &p
	}
	if r.Exclusions != nil {
		e := *r.Exclusions
		e.Placeholders, e.Patterns = slices.Clone(e.Placeholders), slices.Clone(e.Patterns)
		cp.Exclusions = &e
	}
	return &cp
}

// Tasks lists the tasks the caller may see, newest first: an admin's view
// reads the whole store, a user's only their own records.
func (a *Agent) Tasks(c Caller) ([]api.Task, error) {
	list := a.store.List
	if !c.Admin {
		list = func(keep func(*taskstore.Record) bool) ([]*taskstore.Record, error) {
			return a.store.ListUser(c.UID, keep)
		}
	}
	recs, err := list(func(r *taskstore.Record) bool { return a.maySee(c, &r.Task) })
	if err != nil {
		return nil, err
	}
	out := make([]api.Task, 0, len(recs))
	for _, r := range recs {
		if live, ok := a.liveCopy(r.ID); ok {
			r = live
		}
		out = append(out, r.Task)
	}
	return out, nil
}

func (a *Agent) maySee(c Caller, t *api.Task) bool {
	return c.UID == t.OwnerUID || c.UID == t.Requester || c.Admin
}

// Running is the number of tasks in progress.
func (a *Agent) Running() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.live)
}

// owner resolves whose Podman a request addresses and checks the caller
// may act on it.
func (a *Agent) owner(c Caller, name string) (*identity.User, error) {
	if name == "" {
		if c.User == nil {
			return nil, userErr(KindInvalid, "uid %d has no account on node %s", c.UID, a.cfg.NodeName)
		}
		if c.UID == 0 {
			return nil, userErr(KindInvalid, "root has no rootless sessions: name the owner (--user USER)")
		}
		return c.User, nil
	}
	u, err := a.accounts.Lookup(name)
	if err != nil {
		return nil, userErr(KindNotFound, "no user %q on node %s", name, a.cfg.NodeName)
	}
	if u.UID == 0 {
		return nil, userErr(KindInvalid, "baicommit freezes rootless sessions; root's containers are not supported")
	}
	if !c.MayActFor(u.Name) {
		return nil, userErr(KindForbidden, "the sessions of %s are not yours: only %s, root or a baicommit admin may freeze or list them", u.Name, u.Name)
	}
	return u, nil
}

// connect reaches u's Podman (within podman_timeout) and returns it with a
// deadline on every call.
func (a *Agent) connect(ctx context.Context, u *identity.User) (Podman, error) {
	d := a.cfg.PodmanTimeout.Duration
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	conn, err := a.podman.Connect(cctx, u)
	if err != nil {
		if errors.Is(cctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w: no answer within %s (podman_timeout): %v", errPodmanTimeout, d, err)
		}
		return nil, &Error{Kind: KindUnavailable, Err: err,
			Msg: fmt.Sprintf("cannot reach the Podman of %s on node %s: %v", u.Name, a.cfg.NodeName, err)}
	}
	return timedPodman{Podman: conn, p: conn, d: d}, nil
}
