// Package manager is baicommit-manager: the one place users on login nodes
// talk to. It proves who they are with MUNGE, checks that the session or
// job is theirs, relays each request to the agent of the node that runs the
// session (signed with the manager's own MUNGE credential), and answers
// status for the whole cluster. It keeps no state of its own: task ids name
// their node, so any replica answers for any task.
package manager

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/baicommit/baicommit/policy"
)

// Config is the manager's TOML configuration (see manager.toml.example).
type Config struct {
	// Listen is the TCP address of the API.
	Listen string `toml:"listen"`
	// TLSCert and TLSKey turn on HTTPS when both are set.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// AgentURL is the template of an agent's URL; {node} is the node name.
	AgentURL string `toml:"agent_url"`
	// Nodes lists the nodes that have agents. Empty means the keys of
	// Agents when that map is set, or else every node Slurm knows.
	Nodes []string `toml:"nodes"`
	// AgentTimeout bounds each request to an agent.
	AgentTimeout policy.Duration `toml:"agent_timeout"`
	// SavePath is the site-wide save path template passed to agents;
	// empty leaves each agent's own. Agents still only write below their
	// save_roots.
	SavePath string `toml:"save_path"`
	// Admins and AdminGroups may act on anyone's sessions.
	Admins      []string `toml:"admins"`
	AdminGroups []string `toml:"admin_groups"`
	// MungeSocket is munged's socket; empty means its default.
	MungeSocket string `toml:"munge_socket"`
	// SlurmBinDir holds squeue, scontrol and sinfo.
	SlurmBinDir string `toml:"slurm_bin_dir"`
	// Agents maps node names to agent URLs, overriding AgentURL.
	Agents map[string]string `toml:"agents"`
}

// DefaultConfig returns the configuration used for keys a file leaves out.
func DefaultConfig() Config {
	return Config{
		Listen:       ":7470",
		AgentURL:     "http://{node}:7471",
		AgentTimeout: policy.Duration{Duration: 10 * time.Second},
		SlurmBinDir:  "/usr/bin",
	}
}

// LoadConfig reads path over the defaults and validates the result.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		if err := policy.LoadTOML(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, cfg.Validate()
}

// nodeRE is what a node name may look like: a host name.
var nodeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate checks the configuration.
func (c *Config) Validate() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls_cert and tls_key must be set together")
	}
	if !strings.Contains(c.AgentURL, "{node}") {
		return fmt.Errorf("agent_url %q must contain {node}", c.AgentURL)
	}
	if err := checkAgentURL(strings.ReplaceAll(c.AgentURL, "{node}", "node")); err != nil {
		return fmt.Errorf("agent_url: %w", err)
	}
	for node, u := range c.Agents {
		if !nodeRE.MatchString(node) {
			return fmt.Errorf("agents: %q is not a node name", node)
		}
		if err := checkAgentURL(u); err != nil {
			return fmt.Errorf("agents.%s: %w", node, err)
		}
	}
	for _, n := range c.Nodes {
		if !nodeRE.MatchString(n) {
			return fmt.Errorf("nodes: %q is not a node name", n)
		}
	}
	if c.AgentTimeout.Duration <= 0 {
		return errors.New("agent_timeout must be positive")
	}
	if c.SavePath != "" && (!filepath.IsAbs(c.SavePath) || filepath.Clean(c.SavePath) != c.SavePath) {
		return fmt.Errorf("save_path %q must be a clean absolute path template", c.SavePath)
	}
	return nil
}

func checkAgentURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want http://host:port or https://host:port", s)
	}
	return nil
}
