package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
)

// carol is a user whose node has a login session directory (/run/user/UID,
// as systemd-logind makes), so her own Podman socket is the standard one.
const carol = "bccarol"

// withRuntimeDir ensures carol exists and has /run/user/UID for the test.
func withRuntimeDir(t *testing.T) (uid int, dir string) {
	t.Helper()
	if _, err := user.Lookup(carol); err != nil {
		out, err := rootCmd("useradd", "-m", "-s", "/bin/bash", carol)
		assert.NilError(t, err, out)
	}
	u, err := user.Lookup(carol)
	assert.NilError(t, err)
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir = fmt.Sprintf("/run/user/%d", uid)
	assert.NilError(t, os.MkdirAll(dir, 0o700))
	assert.NilError(t, os.Chown(dir, uid, gid))
	t.Cleanup(func() {
		exec.Command("pkill", "-u", carol, "-f", "podman system service").Run()
		os.RemoveAll(dir)
	})
	return uid, dir
}

// TestUsersOwnPodmanSocket: a user with a running Podman socket (the
// systemd user unit's path) is served through it; the agent starts no
// service of its own.
func TestUsersOwnPodmanSocket(t *testing.T) {
	_, rundir := withRuntimeDir(t)
	sock := filepath.Join(rundir, "podman", "podman.sock")
	r := runAs(t, carol, "mkdir", "-p", filepath.Dir(sock))
	assert.Equal(t, r.code, 0, "%s", r)
	svc := exec.Command("runuser", "-u", carol, "--", "env", "-i", "HOME=/home/"+carol, "USER="+carol,
		"PATH=/usr/bin:/bin", "XDG_RUNTIME_DIR="+rundir, "podman", "system", "service", "--time=0", "unix://"+sock)
	svc.Dir = "/"
	assert.NilError(t, svc.Start())
	t.Cleanup(func() { svc.Process.Kill(); svc.Wait() })
	waitFor(t, 30*time.Second, func() bool { _, err := os.Stat(sock); return err == nil })

	a := newAgent(t).start()
	r = a.cli(t, carol, "sessions", "--json")
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Check(t, is.Contains(a.log.String(), `"msg":"using the user's podman socket"`))
	assert.Check(t, !strings.Contains(a.log.String(), "started transient podman service"), a.log.String())
}

// TestForeignSocketRefused: a user who points her standard socket path at
// another user's Podman must not reach that Podman through the root agent.
func TestForeignSocketRefused(t *testing.T) {
	_, rundir := withRuntimeDir(t)
	a := newAgent(t).start()
	ctr := session(t, alice, "echo alice > /root/a.txt")
	// Alice's Podman service is up (the agent started one for her).
	r := a.cli(t, alice, "sessions")
	assert.Equal(t, r.code, 0, "%s", r)
	aliceSock := findTransientSocket(t, a, alice)

	// Carol plants a link to it where her own socket would be.
	r = runAs(t, carol, "sh", "-c", `mkdir -p "$0/podman" && ln -s "$1" "$0/podman/podman.sock"`, rundir, aliceSock)
	assert.Equal(t, r.code, 0, "%s", r)

	c, err := client.New("unix://" + a.sock)
	assert.NilError(t, err)
	r = a.cli(t, carol, "commit", "--wait", ctr)
	assert.Equal(t, r.code, 1, "carol must not freeze alice's container: %s", r)
	assert.Check(t, is.Contains(r.stderr, "no container"))
	assert.Check(t, is.Contains(a.log.String(), "refused a podman socket served by another user"))
	// Nothing was committed in alice's Podman, nothing written anywhere.
	assert.Equal(t, podman(t, alice, "images", "-q", "--filter", "label=io.baicommit.user="+carol), "")
	assert.Check(t, is.Len(listDir(t, a.save), 0))
	var apiErr *client.APIError
	_, err = c.Freeze(context.Background(), api.FreezeRequest{Container: ctr, User: carol})
	assert.Assert(t, errors.As(err, &apiErr), "%v", err)
	assert.Equal(t, apiErr.Status, 404)
}

// findTransientSocket reads from the agent's log where it started who's
// Podman service.
func findTransientSocket(t *testing.T, a *agentProc, who string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(a.log.String()))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "started transient podman service") && strings.Contains(line, `"user":"`+who+`"`) {
			i := strings.Index(line, `"socket":"`)
			rest := line[i+len(`"socket":"`):]
			return rest[:strings.IndexByte(rest, '"')]
		}
	}
	t.Fatalf("no transient service for %s in the agent log", who)
	return ""
}
