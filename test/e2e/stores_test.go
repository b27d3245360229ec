package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
)

// podman5 is the Podman 5.8.2 that scripts/setup.sh builds.
const podman5 = "/opt/podman5/bin/podman"

// store is one user's rootless Podman: its version and storage driver. A
// user's store is created with the first driver used, so each driver and
// version has a user of its own (scripts/setup.sh STORE_USERS).
type store struct {
	user   string
	podman string // the podman binary
	driver string
	name   string // for test names: podman4-vfs, podman5-overlay, …
}

// stores are the combinations freezes are tested on: Podman 4.3.1 and
// 5.8.2, vfs and native rootless overlay.
func stores(t *testing.T) []store {
	t.Helper()
	all := []store{
		{user: alice, podman: "/usr/bin/podman", driver: "vfs", name: "podman4-vfs"},
		{user: "bcovl", podman: "/usr/bin/podman", driver: "overlay", name: "podman4-overlay"},
		{user: "bcp5", podman: podman5, driver: "vfs", name: "podman5-vfs"},
		{user: "bcp5ovl", podman: podman5, driver: "overlay", name: "podman5-overlay"},
		{user: "bcfuse", podman: "/usr/bin/podman", driver: "overlay", name: "podman4-fuse-overlayfs"},
	}
	for _, s := range all {
		if _, err := os.Stat(s.podman); err != nil {
			t.Fatalf("!!! %s is missing (%v): scripts/setup.sh builds it; without it Podman 5 is not tested", s.podman, err)
		}
		r := s.run(t, "info", "--format", "{{.Store.GraphDriverName}}")
		if r.code != 0 || strings.TrimSpace(r.stdout) != s.driver {
			t.Fatalf("!!! user %s should run %s with %s storage, but: %s (run scripts/setup.sh)", s.user, s.podman, s.driver, r)
		}
	}
	return all
}

// env is the user's login-like environment, with this store's podman
// first in PATH.
func (s store) env() []string {
	return []string{"HOME=/home/" + s.user, "USER=" + s.user, "LOGNAME=" + s.user,
		"PATH=" + strings.TrimSuffix(s.podman, "/podman") + ":/usr/local/bin:/usr/bin:/bin",
		"PODMAN_IGNORE_CGROUPSV1_WARNING=1"}
}

// run runs this store's podman as its user.
func (s store) run(t *testing.T, args ...string) result {
	t.Helper()
	return runAsEnv(t, s.user, nil, s.env(), append([]string{s.podman}, args...)...)
}

// sh runs a shell command as the store's user (podman first in PATH).
func (s store) sh(t *testing.T, script string, args ...string) result {
	t.Helper()
	return runAsEnv(t, s.user, nil, s.env(), append([]string{"sh", "-c", script, "sh"}, args...)...)
}

// must runs podman and fails the test if it fails.
func (s store) must(t *testing.T, args ...string) string {
	t.Helper()
	r := s.run(t, args...)
	assert.Equal(t, r.code, 0, "%s podman %v as %s: %s", s.name, args, s.user, r)
	return strings.TrimSpace(r.stdout)
}

// session starts a container of image for the store's user, runs setup in
// it and removes it when the test ends.
func (s store) session(t *testing.T, image, setup string, runArgs ...string) string {
	t.Helper()
	name := "e2e-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "-" + randHex(3)
	args := append([]string{"run", "-d", "--network=none", "--name", name}, runArgs...)
	s.must(t, append(args, image, "sleep", "3600")...)
	t.Cleanup(func() { s.run(t, "rm", "-f", "-t", "0", name) })
	if setup != "" {
		s.must(t, "exec", name, "sh", "-c", setup)
	}
	return name
}

// agent is an agent whose transient Podman services are this store's
// podman.
func (s store) agent(t *testing.T, opts ...agentOpt) *agentProc {
	t.Helper()
	return newAgent(t, append([]agentOpt{withKey("podman", fmt.Sprintf("%q", s.podman))}, opts...)...).start()
}

// load loads an archive with `podman load -i`, as the user would, and
// returns the image's name.
func (s store) load(t *testing.T, path string) string {
	t.Helper()
	r := s.run(t, "load", "-i", path)
	assert.Equal(t, r.code, 0, "%s: podman load -i %s: %s", s.name, path, r)
	out := r.stdout + r.stderr
	i := strings.LastIndex(out, "Loaded image")
	assert.Assert(t, i >= 0, "podman load said: %s", out)
	line := strings.TrimSpace(strings.SplitN(out[i:], "\n", 2)[0])
	name := strings.TrimSpace(line[strings.Index(line, ":")+1:])
	t.Cleanup(func() { s.run(t, "rmi", "-f", name) })
	return name
}
