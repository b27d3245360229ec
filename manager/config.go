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
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/baicommit/baicommit/internal/config"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/units"
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
	// AgentCAFile holds the certificates that sign agents' TLS
	// certificates (https:// agent URLs); empty: the system's.
	AgentCAFile string `toml:"agent_ca_file"`
	// AgentTimeout bounds each request to an agent.
	AgentTimeout config.Duration `toml:"agent_timeout"`
	// MaxFanout is how many agents one user request asks at once.
	MaxFanout int `toml:"max_fanout"`
	// NodesTimeout bounds `baicommit nodes`, which asks every agent: it
	// answers with what it has by then.
	NodesTimeout config.Duration `toml:"nodes_timeout"`
	// SavePath is the site-wide save path template passed to agents;
	// empty leaves each agent's own. Agents still only write below their
	// save_roots.
	SavePath string `toml:"save_path"`
	// StorePath is the site-wide layer store path template passed to
	// agents, as SavePath; Format is the format a freeze writes when the
	// user names none, Formats those the web page offers (empty: every
	// format). Agents still refuse a format their own formats lack.
	StorePath string   `toml:"store_path"`
	Format    string   `toml:"format"`
	Formats   []string `toml:"formats"`
	// Admins may act on anyone's sessions (keys admins and admin_groups).
	identity.Admins
	// Quota and MaxFreezeSize are the site's limits, passed on to agents
	// like save_path; unset, each agent's own apply.
	Quota         policy.Quotas `toml:"quota"`
	MaxFreezeSize units.Size    `toml:"max_freeze_size"`
	// MungeSocket is munged's socket; empty means its default.
	MungeSocket string `toml:"munge_socket"`
	// SlurmBinDir holds squeue, scontrol and sinfo.
	SlurmBinDir string `toml:"slurm_bin_dir"`
	// Agents maps node names to agent URLs, overriding AgentURL.
	Agents map[string]string `toml:"agents"`

	// WebURL is the public address of the web page (where /web/ is
	// served), for the links `baicommit web` prints; empty means the
	// manager URL the CLI used.
	WebURL string `toml:"web_url"`
	// WebKeyFile holds the key that signs web sessions; replicas share it.
	// Empty: a random key per process (sessions end when it restarts).
	WebKeyFile string `toml:"web_key_file"`
	// WebLinkTTL is how long a login link stays good (it is good once).
	WebLinkTTL config.Duration `toml:"web_link_ttl"`
	// WebSessionTTL is how long a browser stays signed in.
	WebSessionTTL config.Duration `toml:"web_session_ttl"`
	// WebProxyHeader names the header in which an authenticating proxy
	// (Open OnDemand, an SSO gateway) passes the user name. It is believed
	// only from WebTrustedProxies, and only with the proxy's secret.
	WebProxyHeader    string   `toml:"web_proxy_header"`
	WebTrustedProxies []string `toml:"web_trusted_proxies"`
	// WebProxySecretFile holds the secret the proxy proves itself with,
	// sent in WebProxySecretHeader: every process on the proxy's host
	// shares its address, only the proxy can read this file.
	WebProxySecretFile   string `toml:"web_proxy_secret_file"`
	WebProxySecretHeader string `toml:"web_proxy_secret_header"`
	// WebPushRegistries are the registries (host[:port]) a freeze started
	// from the web page may push to; "*" allows any. Empty: the page
	// pushes nowhere.
	WebPushRegistries []string `toml:"web_push_registries"`
	// WebRevokedDir is a directory the replicas share where signed-out
	// sessions are recorded, so that a copied cookie stops working on
	// every replica; empty keeps them in each replica's memory.
	WebRevokedDir string `toml:"web_revoked_dir"`
}

// DefaultConfig returns the configuration used for keys a file leaves out.
func DefaultConfig() Config {
	return Config{
		Listen:        ":7470",
		AgentURL:      "http://{node}:7471",
		AgentTimeout:  config.Duration{Duration: 10 * time.Second},
		MaxFanout:     64,
		NodesTimeout:  config.Duration{Duration: 20 * time.Second},
		SlurmBinDir:   "/usr/bin",
		WebLinkTTL:    config.Duration{Duration: 2 * time.Minute},
		WebSessionTTL: config.Duration{Duration: 8 * time.Hour},

		WebProxySecretHeader: "X-Baicommit-Proxy-Secret",
	}
}

// LoadConfig reads path over the defaults and validates the result.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
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
	if err := checkHTTPURL(strings.ReplaceAll(c.AgentURL, "{node}", "node")); err != nil {
		return fmt.Errorf("agent_url: %w", err)
	}
	for node, u := range c.Agents {
		if !nodeRE.MatchString(node) {
			return fmt.Errorf("agents: %q is not a node name", node)
		}
		if err := checkHTTPURL(u); err != nil {
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
	if err := c.Quota.Validate(c.MaxFreezeSize); err != nil {
		return err
	}
	if c.MaxFanout < 1 || c.MaxFanout > 4096 {
		return fmt.Errorf("max_fanout %d: want between 1 and 4096", c.MaxFanout)
	}
	if c.NodesTimeout.Duration <= 0 {
		return errors.New("nodes_timeout must be positive")
	}
	if c.SavePath != "" && (!filepath.IsAbs(c.SavePath) || filepath.Clean(c.SavePath) != c.SavePath) {
		return fmt.Errorf("save_path %q must be a clean absolute path template", c.SavePath)
	}
	if err := c.validateFormats(); err != nil {
		return err
	}
	return c.validateWeb()
}

// maxLinkTTL caps web_link_ttl: a login link is a bearer secret shown on a
// terminal.
const maxLinkTTL = time.Hour

func (c *Config) validateWeb() error {
	if c.WebURL != "" {
		if err := checkHTTPURL(c.WebURL); err != nil {
			return fmt.Errorf("web_url: %w", err)
		}
	}
	if d := c.WebLinkTTL.Duration; d < time.Second || d > maxLinkTTL {
		return fmt.Errorf("web_link_ttl %s: want between 1s and %s", d, maxLinkTTL)
	}
	if c.WebSessionTTL.Duration < time.Minute {
		return fmt.Errorf("web_session_ttl %s: want at least 1m", c.WebSessionTTL.Duration)
	}
	if (c.WebProxyHeader == "") != (len(c.WebTrustedProxies) == 0) {
		return errors.New("web_proxy_header and web_trusted_proxies must be set together")
	}
	if c.WebProxyHeader != "" && c.WebProxySecretFile == "" {
		return errors.New("web_proxy_header needs web_proxy_secret_file: every process on the proxy's host shares its address, so the proxy proves itself with a secret only it can read")
	}
	if c.WebProxySecretFile != "" && (c.WebProxySecretHeader == "" || strings.EqualFold(c.WebProxySecretHeader, c.WebProxyHeader)) {
		return errors.New("web_proxy_secret_header must name a header of its own")
	}
	for _, r := range c.WebPushRegistries {
		if r != "*" && (r == "" || strings.ContainsAny(r, "/ ")) {
			return fmt.Errorf("web_push_registries: %q is not a registry host[:port] (or \"*\")", r)
		}
	}
	if _, err := c.trustedProxies(); err != nil {
		return err
	}
	return nil
}

// trustedProxies parses web_trusted_proxies: addresses or CIDR prefixes.
func (c *Config) trustedProxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.WebTrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("web_trusted_proxies: %q is neither an address nor a CIDR prefix", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want http://host:port or https://host:port", s)
	}
	return nil
}
