// Package agent is the root side of the node daemon, baicommit-agent: it
// learns who calls (package identity), authorizes freeze requests, records
// them as tasks (package taskstore), schedules them, drives the owner's
// Podman (through the Podman interface, package podman behind it) and runs
// the owner-side helper (package asowner, through package messages) for
// everything that touches the owner's files. It never reads or writes a
// user's file itself. Its HTTP API is served by NewServer.
package agent

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/baicommit/baicommit/internal/config"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/policy"
)

// Config is the agent's TOML configuration (see agent.toml.example).
type Config struct {
	policy.Policy
	// Admins may freeze and list anyone's sessions (keys admins and
	// admin_groups).
	identity.Admins
	// NodeName names this node in task ids, file names and provenance.
	NodeName string `toml:"node_name"`
	// StateDir holds the task database.
	StateDir string `toml:"state_dir"`
	// RunDir holds per-user private Podman sockets.
	RunDir string `toml:"run_dir"`
	// IdleExit is how long a socket-activated agent waits with no request
	// and no running task before it exits; 0 never exits.
	IdleExit Duration `toml:"idle_exit"`
	// TransientServiceIdle is how long a Podman service the agent started
	// for a user lingers without requests.
	TransientServiceIdle Duration `toml:"transient_service_idle"`
	// Podman is the podman binary used to start transient services.
	Podman string `toml:"podman"`
	// MaxParallel is how many freezes run at once on this node; more
	// wait, queued. Commits and compression are heavy on a node that is
	// also running jobs.
	MaxParallel int `toml:"max_parallel"`
	// MaxRunningPerUser is how many of those one user holds at most, so
	// that one user's freezes (or stuck ones) never take the whole node;
	// 0 means half of max_parallel, at least 1.
	MaxRunningPerUser int `toml:"max_running_per_user"`
	// MaxQueuedPerUser is how many freezes one user may have waiting.
	MaxQueuedPerUser int `toml:"max_queued_per_user"`
	// TaskTimeout bounds a freeze from the moment it holds a slot to its
	// end (commit, export, push): a user's Podman or helper that never
	// answers gives the slot back by then.
	TaskTimeout Duration `toml:"task_timeout"`
	// PodmanTimeout bounds every call to a user's Podman but the commit
	// (which task_timeout bounds), and reaching or starting it.
	PodmanTimeout Duration `toml:"podman_timeout"`
	// TaskRetention is how long finished tasks are kept, and
	// MaxTasksPerUser how many of each user's at most (the newest).
	TaskRetention   Duration `toml:"task_retention"`
	MaxTasksPerUser int      `toml:"max_tasks_per_user"`
	// RequestTimeout bounds reading a request, headers and body;
	// IdleConnectionTimeout closes a kept-alive connection nobody uses;
	// MaxConnectionsPerUser is how many connections one uid may hold open
	// on the unix socket (root's are not counted).
	RequestTimeout        Duration `toml:"request_timeout"`
	IdleConnectionTimeout Duration `toml:"idle_connection_timeout"`
	MaxConnectionsPerUser int      `toml:"max_connections_per_user"`
	// UserCgroups are where a user's own processes belong, relative to
	// each cgroup hierarchy ({uid}, {user}): the first that exists takes
	// the Podman service and the helpers the agent starts for that user,
	// so that the user's (or their jobs') limits apply to them too.
	UserCgroups []string `toml:"user_cgroups"`
	// HelperThreads caps the threads (and so the cores) a helper
	// compresses with; 0 uses every core it may run on.
	HelperThreads int `toml:"helper_threads"`
	// ManagerUser is the account baicommit-manager runs as. Only a fresh
	// MUNGE credential made by this user, for this node, opens a session
	// on the agent's TCP listener, and every request there must be signed
	// with such a session; empty means the TCP listener refuses
	// everything.
	ManagerUser string `toml:"manager_user"`
	// MungeSocket is munged's socket; empty means its default.
	MungeSocket string `toml:"munge_socket"`
	// TLSCert and TLSKey make the TCP listener speak TLS (the manager then
	// reaches the agent at https://): required for pushes whose request
	// carries a password.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
}

// Duration is a time.Duration written as "60s" in TOML.
type Duration = config.Duration

// DefaultConfig returns the configuration used for keys a file leaves out.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	return Config{
		Policy:                policy.Default(),
		NodeName:              host,
		StateDir:              "/var/lib/baicommit",
		RunDir:                "/run/baicommit/users",
		IdleExit:              Duration{Duration: 60 * time.Second},
		TransientServiceIdle:  Duration{Duration: 300 * time.Second},
		Podman:                "/usr/bin/podman",
		MaxParallel:           2,
		MaxQueuedPerUser:      8,
		TaskTimeout:           Duration{Duration: 3 * time.Hour},
		PodmanTimeout:         Duration{Duration: time.Minute},
		TaskRetention:         Duration{Duration: 30 * 24 * time.Hour},
		MaxTasksPerUser:       200,
		RequestTimeout:        Duration{Duration: 30 * time.Second},
		IdleConnectionTimeout: Duration{Duration: time.Minute},
		MaxConnectionsPerUser: 16,
		// systemd's user slice, then Slurm's cgroup/v1 user level.
		UserCgroups: []string{"user.slice/user-{uid}.slice", "slurm/uid_{uid}"},
	}
}

// LoadConfig reads path over the defaults and validates the result.
// Unknown keys are errors: a misspelt key must not silently fall back to
// a default that writes somewhere unexpected.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, cfg.Validate()
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if !policy.Safe(c.NodeName) || len(c.NodeName) > 63 {
		return fmt.Errorf("node_name %q: use letters, digits, '.', '_' or '-'", c.NodeName)
	}
	if c.StateDir == "" || c.RunDir == "" {
		return fmt.Errorf("state_dir and run_dir must be set")
	}
	if c.MaxParallel < 1 {
		return fmt.Errorf("max_parallel must be at least 1")
	}
	if c.TransientServiceIdle.Duration < time.Second {
		return fmt.Errorf("transient_service_idle must be at least 1s")
	}
	switch {
	case c.MaxRunningPerUser < 0 || c.MaxRunningPerUser > c.MaxParallel:
		return fmt.Errorf("max_running_per_user must be between 1 and max_parallel (0: half of max_parallel)")
	case c.MaxRunningPerUser == 0:
		c.MaxRunningPerUser = max(1, c.MaxParallel/2)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("tls_cert and tls_key must be set together")
	}
	if c.MaxQueuedPerUser < 1 {
		return fmt.Errorf("max_queued_per_user must be at least 1")
	}
	for key, d := range map[string]Duration{"task_timeout": c.TaskTimeout, "podman_timeout": c.PodmanTimeout,
		"task_retention": c.TaskRetention, "request_timeout": c.RequestTimeout, "idle_connection_timeout": c.IdleConnectionTimeout} {
		if d.Duration < time.Second {
			return fmt.Errorf("%s must be at least 1s", key)
		}
	}
	if c.MaxTasksPerUser < 1 || c.MaxConnectionsPerUser < 1 || c.HelperThreads < 0 {
		return fmt.Errorf("max_tasks_per_user and max_connections_per_user must be at least 1, helper_threads at least 0")
	}
	for _, t := range c.UserCgroups {
		if t == "" || strings.HasPrefix(t, "/") || strings.Contains(t, "..") {
			return fmt.Errorf("user_cgroups: %q must be a path relative to the cgroup hierarchies, without '..'", t)
		}
	}
	return c.Policy.Validate()
}
