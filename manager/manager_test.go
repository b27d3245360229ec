package manager

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/slurm"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		err  string
	}{
		{name: "default", edit: func(*Config) {}},
		{name: "template without node", edit: func(c *Config) { c.AgentURL = "http://agent:7471" }, err: "must contain {node}"},
		{name: "template not http", edit: func(c *Config) { c.AgentURL = "unix:///{node}" }, err: "want http://host:port"},
		{name: "tls half", edit: func(c *Config) { c.TLSCert = "/c.pem" }, err: "tls_cert and tls_key"},
		{name: "bad static node", edit: func(c *Config) { c.Agents = map[string]string{"../x": "http://a:1"} }, err: "not a node name"},
		{name: "bad static url", edit: func(c *Config) { c.Agents = map[string]string{"n1": "ftp://a"} }, err: "agents.n1"},
		{name: "relative save path", edit: func(c *Config) { c.SavePath = "scratch/{user}" }, err: "clean absolute"},
		{name: "dotdot save path", edit: func(c *Config) { c.SavePath = "/scratch/../etc" }, err: "clean absolute"},
		{name: "zero timeout", edit: func(c *Config) { c.AgentTimeout.Duration = 0 }, err: "agent_timeout"},
		{name: "web behind a proxy", edit: func(c *Config) {
			c.WebURL = "https://ood.example.org/rnode/mgr/7470/web/"
			c.WebProxyHeader, c.WebTrustedProxies = "X-Forwarded-User", []string{"10.0.0.5", "192.0.2.0/24", "::1"}
			c.WebProxySecretFile = "/etc/baicommit/proxy.secret"
		}},
		{name: "proxy without a secret", edit: func(c *Config) {
			c.WebProxyHeader, c.WebTrustedProxies = "X-Forwarded-User", []string{"10.0.0.5"}
		}, err: "needs web_proxy_secret_file"},
		{name: "the secret in the user's header", edit: func(c *Config) {
			c.WebProxyHeader, c.WebTrustedProxies = "X-Forwarded-User", []string{"10.0.0.5"}
			c.WebProxySecretFile, c.WebProxySecretHeader = "/etc/baicommit/proxy.secret", "x-forwarded-user"
		}, err: "a header of its own"},
		{name: "push registries", edit: func(c *Config) { c.WebPushRegistries = []string{"reg.example:5000", "*"} }},
		{name: "push registry with a path", edit: func(c *Config) { c.WebPushRegistries = []string{"reg.example/alice"} }, err: "web_push_registries"},
		{name: "web_url not http", edit: func(c *Config) { c.WebURL = "ood.example.org" }, err: "web_url"},
		{name: "link ttl too long", edit: func(c *Config) { c.WebLinkTTL.Duration = 2 * time.Hour }, err: "web_link_ttl"},
		{name: "link ttl zero", edit: func(c *Config) { c.WebLinkTTL.Duration = 0 }, err: "web_link_ttl"},
		{name: "session ttl short", edit: func(c *Config) { c.WebSessionTTL.Duration = time.Second }, err: "web_session_ttl"},
		{name: "proxy header alone", edit: func(c *Config) { c.WebProxyHeader = "X-Forwarded-User" }, err: "set together"},
		{name: "proxies alone", edit: func(c *Config) { c.WebTrustedProxies = []string{"10.0.0.5"} }, err: "set together"},
		{name: "bad proxy", edit: func(c *Config) {
			c.WebProxyHeader, c.WebTrustedProxies = "X-Forwarded-User", []string{"ood.example.org"}
			c.WebProxySecretFile = "/etc/baicommit/proxy.secret"
		}, err: "neither an address nor a CIDR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.err == "" {
				assert.NilError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.err)
			}
		})
	}
}

// The example an admin starts from loads as it is, with the defaults.
func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadConfig("../manager.toml.example")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cfg.WebLinkTTL.Duration, 2*time.Minute))
	assert.Check(t, is.Equal(cfg.WebSessionTTL.Duration, 8*time.Hour))
	assert.Check(t, is.Equal(cfg.WebKeyFile, ""))
}

func TestLoadConfigNamesUnknownKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "manager.toml")
	assert.NilError(t, os.WriteFile(p, []byte("listen = \":1\"\nagent_ulr = \"x\"\n"), 0o644))
	_, err := LoadConfig(p)
	assert.ErrorContains(t, err, "unknown key agent_ulr (line 2)")
}

// fakeSlurm answers from a table.
type fakeSlurm struct {
	jobs  map[string]*slurm.Job
	nodes []string
	err   error
	// asked counts the node list questions, askedUser those of where a
	// user's jobs run.
	asked, askedUser int
}

func (f *fakeSlurm) Job(_ context.Context, id string) (*slurm.Job, error) {
	if f.err != nil {
		return nil, f.err
	}
	if j, ok := f.jobs[id]; ok {
		return j, nil
	}
	return nil, slurm.ErrNoJob
}
func (f *fakeSlurm) UserNodes(context.Context, string) ([]string, error) {
	f.askedUser++
	return f.nodes, f.err
}
func (f *fakeSlurm) RecentNodes(context.Context, string) ([]string, error) {
	f.askedUser++
	return f.nodes, f.err
}
func (f *fakeSlurm) Nodes(context.Context) ([]string, error) {
	f.asked++
	return f.nodes, f.err
}

func newTestManager(cfg Config, s Slurm) *Manager {
	m, err := New(cfg, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		panic(err)
	}
	return m
}

func TestPlaceFreeze(t *testing.T) {
	s := &fakeSlurm{jobs: map[string]*slurm.Job{
		"42": {ID: "42", User: "alice", State: "RUNNING", Nodes: []string{"cn01"}},
		"43": {ID: "43", User: "bob", State: "RUNNING", Nodes: []string{"cn02"}},
		"44": {ID: "44", User: "alice", State: "PENDING"},
	}}
	m := newTestManager(DefaultConfig(), s)
	alice := &Identity{UID: 1000, User: &identity.User{UID: 1000, Name: "alice"}}
	admin := &Identity{UID: 1001, User: &identity.User{UID: 1001, Name: "root2"}, Admin: true}
	for _, tc := range []struct {
		name     string
		id       *Identity
		req      api.FreezeRequest
		node     string
		owner    string
		status   int
		contains string
	}{
		{name: "node named", id: alice, req: api.FreezeRequest{Container: "c", Node: "cn07"}, node: "cn07"},
		{name: "job", id: alice, req: api.FreezeRequest{Container: "c", Job: "42"}, node: "cn01"},
		{name: "job and its node", id: alice, req: api.FreezeRequest{Container: "c", Job: "42", Node: "cn01"}, node: "cn01"},
		{name: "job and another node", id: alice, req: api.FreezeRequest{Container: "c", Job: "42", Node: "cn02"}, status: 400, contains: "does not run on node cn02"},
		{name: "nowhere", id: alice, req: api.FreezeRequest{Container: "c"}, status: 400, contains: "--node NODE or --job JOBID"},
		{name: "someone else's job", id: alice, req: api.FreezeRequest{Container: "c", Job: "43"}, status: 403, contains: "job 43 is bob's, not yours"},
		{name: "admin on someone else's job", id: admin, req: api.FreezeRequest{Container: "c", Job: "43"}, node: "cn02", owner: "bob"},
		{name: "no such job", id: alice, req: api.FreezeRequest{Container: "c", Job: "99"}, status: 404, contains: "no running job 99"},
		{name: "pending job", id: alice, req: api.FreezeRequest{Container: "c", Job: "44"}, status: 400, contains: "has no node yet (it is pending)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			node, err := m.placeFreeze(context.Background(), tc.id, &req)
			if tc.status != 0 {
				assert.Check(t, is.Equal(Status(err), tc.status), "%v", err)
				assert.Check(t, is.ErrorContains(err, tc.contains))
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(node, tc.node))
			assert.Check(t, is.Equal(req.User, tc.owner))
		})
	}

	s.err = slurm.ErrUnavailable
	_, err := m.placeFreeze(context.Background(), alice, &api.FreezeRequest{Container: "c", Job: "42"})
	assert.Check(t, is.Equal(Status(err), http.StatusServiceUnavailable))
	assert.Check(t, is.ErrorContains(err, "name the node with --node"))
}

func TestAgentURL(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Agents = map[string]string{"special": "http://10.0.0.9:9000/"}
	cfg.Nodes = []string{"cn01", "cn02"}
	m := newTestManager(cfg, &fakeSlurm{err: errors.New("not asked when nodes are listed")})
	ctx := context.Background()
	for _, tc := range []struct {
		node, url string
		status    int
	}{
		{node: "special", url: "http://10.0.0.9:9000"},
		{node: "cn02", url: "http://cn02:7471"},
		{node: "cn99", status: 404},
		{node: "../etc", status: 400},
		{node: "a b", status: 400},
	} {
		u, err := m.agentURL(ctx, tc.node)
		if tc.status != 0 || err != nil {
			assert.Check(t, is.Equal(Status(err), tc.status), "%s: %v", tc.node, err)
			continue
		}
		assert.Check(t, is.Equal(u, tc.url))
	}
	// With only a static map, that map is the node list.
	cfg.Nodes = nil
	ns, err := newTestManager(cfg, &fakeSlurm{err: errors.New("down")}).nodes(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(ns.list, []string{"special"}))
}

func TestMayActFor(t *testing.T) {
	alice := &Identity{UID: 1000, User: &identity.User{UID: 1000, Name: "alice"}}
	assert.Check(t, mayActFor(alice, ""))
	assert.Check(t, mayActFor(alice, "alice"))
	assert.Check(t, mayActFor(alice, "1000"))
	err := mayActFor(alice, "bob")
	assert.Check(t, is.Equal(Status(err), http.StatusForbidden))
	assert.Check(t, mayActFor(&Identity{User: &identity.User{Name: "carol"}, Admin: true}, "bob"))
}

func TestMetricsCountEachFinishedTaskOnce(t *testing.T) {
	m := newMetrics()
	now := time.Now()
	done := &api.Task{ID: "t1.n1", State: api.StateSucceeded, Created: now.Add(-3 * time.Second), Finished: now,
		Archive: &api.Archive{Size: 1000}}
	m.observe(done)
	m.observe(done)
	m.observe(&api.Task{ID: "t2.n1", State: api.StateRunning})
	m.observe(&api.Task{ID: "t3.n1", State: api.StateFailed})
	mfs, err := m.reg.Gather()
	assert.NilError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range mt.GetLabel() {
				key += "," + l.GetValue()
			}
			switch {
			case mt.Counter != nil:
				got[key] = mt.Counter.GetValue()
			case mt.Histogram != nil:
				got[key] = float64(mt.Histogram.GetSampleCount())
			}
		}
	}
	assert.Check(t, is.Equal(got["baicommit_manager_freezes_total,succeeded"], 1.0))
	assert.Check(t, is.Equal(got["baicommit_manager_freezes_total,failed"], 1.0))
	assert.Check(t, is.Equal(got["baicommit_manager_archive_bytes_written_total"], 1000.0))
	assert.Check(t, is.Equal(got["baicommit_manager_freeze_duration_seconds"], 1.0))
}

// With agent_url routing, requests naming known nodes do not ask Slurm
// each time; an unknown node asks again only once the list is a bit old.
func TestSlurmNodeListIsCached(t *testing.T) {
	s := &fakeSlurm{nodes: []string{"cn01", "cn02"}}
	m := newTestManager(DefaultConfig(), s)
	ctx := context.Background()
	for range 5 {
		u, err := m.agentURL(ctx, "cn02")
		assert.NilError(t, err)
		assert.Check(t, is.Equal(u, "http://cn02:7471"))
	}
	assert.Check(t, is.Equal(s.asked, 1))

	_, err := m.agentURL(ctx, "cn03")
	assert.Check(t, is.Equal(Status(err), http.StatusNotFound))
	assert.Check(t, is.Equal(s.asked, 1), "a fresh list is not asked again for a typo")

	// Ten seconds later, cn03 has joined the cluster.
	m.slurmNodes.at = m.slurmNodes.at.Add(-nodeListRecheck)
	s.nodes = append(s.nodes, "cn03")
	u, err := m.agentURL(ctx, "cn03")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(u, "http://cn03:7471"))
	assert.Check(t, is.Equal(s.asked, 2))
}

// A push password goes to an agent only over TLS.
func TestCredsOnlyOverTLS(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Agents = map[string]string{"plain": "http://plain:7471", "tls": "https://tls:7471"}
	m := newTestManager(cfg, &fakeSlurm{})
	push := &api.PushRequest{Ref: "r.example/a:b", Creds: "u:secret"}
	err := m.checkCredsInClear(context.Background(), "plain", push)
	assert.Check(t, is.ErrorContains(err, "would travel to the agent of node plain in clear"))
	assert.Check(t, !strings.Contains(err.Error(), "secret"))
	assert.Check(t, m.checkCredsInClear(context.Background(), "tls", push))
	assert.Check(t, m.checkCredsInClear(context.Background(), "plain", &api.PushRequest{Ref: "r.example/a:b"}))
	assert.Check(t, m.checkCredsInClear(context.Background(), "plain", nil))
}
