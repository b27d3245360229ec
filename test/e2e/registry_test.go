package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	"gotest.tools/v3/poll"
)

// testRegistry is a real docker-registry (distribution) with htpasswd
// authentication on a free loopback port, plain HTTP, private to a test.
type testRegistry struct {
	addr       string // 127.0.0.1:PORT
	user, pass string
	dir        string
	cmd        *exec.Cmd
	log        *lockedBuffer
}

// startRegistry starts a registry that accepts user with a random
// password, and stops it when the test ends.
func startRegistry(t *testing.T, user string) *testRegistry {
	t.Helper()
	for _, bin := range []string{"docker-registry", "htpasswd"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("!!! %s is missing: scripts/setup.sh installs docker-registry and apache2-utils", bin)
		}
	}
	dir := t.TempDir()
	r := &testRegistry{user: user, pass: "pw-" + randHex(8), dir: dir, log: &lockedBuffer{}}
	out, err := exec.Command("htpasswd", "-Bbn", r.user, r.pass).Output()
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "htpasswd"), out, 0o600))

	// A free port: the kernel picks one, the registry takes it over.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	r.addr = l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
  secret: %s
auth:
  htpasswd:
    realm: baicommit-e2e
    path: %s
`, filepath.Join(dir, "data"), r.addr, randHex(16), filepath.Join(dir, "htpasswd"))
	cfgPath := filepath.Join(dir, "config.yml")
	assert.NilError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	r.cmd = exec.Command("docker-registry", "serve", cfgPath)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	assert.NilError(t, r.cmd.Start())
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("registry log:\n%s", r.log)
		}
	})
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		select {
		case <-done:
			return poll.Error(fmt.Errorf("docker-registry exited: %s", r.log))
		default:
		}
		resp, err := http.Get("http://" + r.addr + "/v2/")
		if err != nil {
			return poll.Continue("registry not up: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return poll.Error(fmt.Errorf("registry answered /v2/ without credentials with %s, want 401", resp.Status))
		}
		return poll.Success()
	}, poll.WithTimeout(20*time.Second), poll.WithDelay(50*time.Millisecond))
	return r
}

// creds is USER:PASSWORD of the registry's user.
func (r *testRegistry) creds() string { return r.user + ":" + r.pass }

// manifestDigest asks the registry (with the right credentials) for the
// digest of repo:tag; "" if it has no such manifest.
func (r *testRegistry) manifestDigest(t *testing.T, repo, tag string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+r.addr+"/v2/"+repo+"/manifests/"+tag, nil)
	assert.NilError(t, err)
	req.SetBasicAuth(r.user, r.pass)
	req.Header.Set("Accept", strings.Join([]string{
		"application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.oci.image.manifest.v1+json",
	}, ", "))
	resp, err := http.DefaultClient.Do(req)
	assert.NilError(t, err)
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return ""
	}
	assert.Equal(t, resp.StatusCode, http.StatusOK, "HEAD manifest %s:%s", repo, tag)
	return resp.Header.Get("Docker-Content-Digest")
}

// runAsWithEnv runs argv as who with exactly env (plus nothing else), from
// the root directory.
func runAsWithEnv(t *testing.T, who string, env []string, argv ...string) result {
	t.Helper()
	return runAsEnv(t, who, nil, env, argv...)
}
