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
	// ManagerUser is the account baicommit-manager runs as. Only a fresh
	// MUNGE credential made by this user, for this node, opens a session
	// on the agent's TCP listener, and every request there must be signed
	// with such a session; empty means the TCP listener refuses
	// everything.
	ManagerUser string `toml:"manager_user"`
	// MungeSocket is munged's socket; empty means its default.
	MungeSocket string `toml:"munge_socket"`
}

// Duration is a time.Duration written as "60s" in TOML.
type Duration = config.Duration

// DefaultConfig returns the configuration used for keys a file leaves out.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	return Config{
		Policy:               policy.Default(),
		NodeName:             host,
		StateDir:             "/var/lib/baicommit",
		RunDir:               "/run/baicommit/users",
		IdleExit:             Duration{Duration: 60 * time.Second},
		TransientServiceIdle: Duration{Duration: 300 * time.Second},
		Podman:               "/usr/bin/podman",
		MaxParallel:          2,
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
	return c.Policy.Validate()
}
