package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
	"github.com/baicommit/baicommit/internal/config"
	"github.com/baicommit/baicommit/internal/munge"
)

// EnvManager names the environment variable with the manager's URL.
const EnvManager = "BAICOMMIT_MANAGER"

// EnvClientConfig overrides where the client configuration is read from.
const EnvClientConfig = "BAICOMMIT_CLIENT_CONFIG"

// DefaultClientConfig is the site's client configuration, e.g. on login
// nodes: manager = "https://baicommit.example.org:7470".
const DefaultClientConfig = "/etc/baicommit/client.toml"

// clientConfig is the client's TOML configuration.
type clientConfig struct {
	Manager string `toml:"manager"`
	// CA is a PEM file of the CA that signed the manager's certificate,
	// when it is not one the system trusts.
	CA string `toml:"ca"`
}

// credentialTTL is the lifetime of the credential sent with each request:
// long enough for a slow network, short for anything captured.
const credentialTTL = time.Minute

// managerURL says which manager to use, if any: --manager, then
// BAICOMMIT_MANAGER, then the client configuration. An --agent given
// explicitly wins over a configured manager, so on a compute node the local
// agent stays reachable.
func managerURL(c *ucli.Context) (string, error) {
	if m := c.String("manager"); m != "" {
		return m, nil
	}
	if c.IsSet("agent") {
		return "", nil
	}
	cfg, err := loadClientConfig()
	return cfg.Manager, err
}

// loadClientConfig reads the client configuration; none is no error.
func loadClientConfig() (clientConfig, error) {
	path := os.Getenv(EnvClientConfig)
	if path == "" {
		path = DefaultClientConfig
	}
	var cfg clientConfig
	if err := config.Load(path, &cfg); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return cfg, err
	}
	return cfg, nil
}

// managerOnly says, as a usage error of cmd, that only a manager answers
// it, when none is configured.
func managerOnly(c *ucli.Context, cmd, why string) error {
	mgr, err := managerURL(c)
	if err == nil && mgr == "" {
		err = usageErrorf(cmd, "%s: pass --manager URL (or set %s)", why, EnvManager)
	}
	return err
}

// rootCAs returns the CA pool --ca (or the configuration's ca) names, or
// nil for the system's.
func rootCAs(c *ucli.Context) (*x509.CertPool, error) {
	path := c.String("ca")
	if path == "" {
		cfg, err := loadClientConfig()
		if err != nil {
			return nil, err
		}
		path = cfg.CA
	}
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// newClient returns a client of the manager, if one is configured, or of
// the agent the --agent flag names.
func newClient(c *ucli.Context) (*client.Client, error) {
	mgr, err := managerURL(c)
	if err != nil {
		return nil, err
	}
	if mgr == "" {
		return client.New(c.String("agent"))
	}
	codec := munge.Codec{}
	stderr := c.App.ErrWriter
	opts := []client.Option{client.WithManager()}
	pool, err := rootCAs(c)
	if err != nil {
		return nil, err
	}
	if pool != nil {
		opts = append(opts, client.WithRootCAs(pool))
	}
	return client.New(mgr, append(opts,
		client.WithSigner(func(ctx context.Context, req *http.Request, body []byte) error {
			return codec.Sign(ctx, req, body, munge.AudienceManager, munge.EncodeOptions{TTL: credentialTTL})
		}),
		client.WithWarnings(func(w string) { fmt.Fprintln(stderr, "baicommit: warning:", warningText(w)) }))...)
}

// warningText returns the quoted text of an HTTP Warning header value.
func warningText(w string) string {
	if i := strings.IndexByte(w, '"'); i >= 0 && strings.HasSuffix(w, `"`) && len(w) > i+1 {
		return w[i+1 : len(w)-1]
	}
	return w
}

// needManager refuses flags that only a manager understands.
func needManager(c *ucli.Context, flags ...string) error {
	mgr, err := managerURL(c)
	if err != nil || mgr != "" {
		return err
	}
	for _, f := range flags {
		if c.String(f) != "" {
			return usageErrorf(c.Command.Name, "--%s needs a manager: pass --manager URL (or set %s)", f, EnvManager)
		}
	}
	return nil
}

func (e *env) nodesCommand() *ucli.Command {
	return query[[]api.NodeStatus]{
		name:     "nodes",
		usage:    "list the nodes the manager serves and whether their agents answer",
		jsonHelp: "print the nodes as a JSON array",
		fetchWith: func(c *ucli.Context, cl *client.Client) ([]api.NodeStatus, error) {
			if err := managerOnly(c, "nodes", "nodes needs a manager"); err != nil {
				return nil, err
			}
			return cl.Nodes(c.Context)
		},
		print: printTo(printNodes),
	}.command(e)
}

func printNodes(w io.Writer, ns []api.NodeStatus, _ time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NODE\tAGENT\tVERSION\tRUNNING\tLATENCY\tERROR")
	for _, n := range ns {
		state := "down"
		if n.Reachable {
			state = "up"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.1fms\t%s\n", n.Node, state, orDash(n.Version), n.Running, n.LatencyMS, orDash(n.Error))
	}
	return tw.Flush()
}
