package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
)

// TestSocketActivation starts the agent the way systemd does, through
// systemd-socket-activate (same LISTEN_FDS protocol), and checks that a
// user reaches it and that it exits by itself once idle.
func TestSocketActivation(t *testing.T) {
	sa, err := exec.LookPath("systemd-socket-activate")
	assert.NilError(t, err, "systemd-socket-activate is needed (Debian package systemd); scripts/setup.sh installs it")
	a := newAgent(t, withKey("idle_exit", `"2s"`))
	var log lockedBuffer
	cmd := exec.Command(sa, "-l", a.sock, "--fdname=agent", bins.agent, "--config", a.cfgPath)
	cmd.Stdout, cmd.Stderr = &log, &log
	assert.NilError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	})
	waitFor(t, 10*time.Second, func() bool { _, err := os.Stat(a.sock); return err == nil })
	// systemd's unit sets SocketMode=0666; systemd-socket-activate uses the umask.
	assert.NilError(t, os.Chmod(a.sock, 0o666))

	r := a.cli(t, alice, "version", "--json")
	assert.Equal(t, r.code, 0, "%s", r)
	var v api.VersionInfo
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &v), "%s", r)
	assert.Equal(t, v.CallerName, alice, "the agent must know the caller from SO_PEERCRED")
	assert.Equal(t, v.Node, node)
	assert.Check(t, is.Contains(log.String(), `"socket_activated":true`))

	select {
	case err := <-exited:
		assert.NilError(t, err, "an idle exit is a clean exit")
	case <-time.After(20 * time.Second):
		t.Fatal("the socket-activated agent did not exit after idle_exit=2s")
	}
	assert.Check(t, is.Contains(log.String(), `"reason":"idle"`))
}

// TestIdleAgentComesBack holds the listening socket as systemd does across
// the agent's runs: the agent exits when idle, and the next connection
// starts it again without losing the request. It also checks that an
// agent busy with a freeze does not exit under it.
func TestIdleAgentComesBack(t *testing.T) {
	a := newAgent(t, withKey("idle_exit", `"1s"`))
	ln, err := net.Listen("unix", a.sock)
	assert.NilError(t, err)
	defer ln.Close()
	assert.NilError(t, os.Chmod(a.sock, 0o666))
	lf, err := ln.(*net.UnixListener).File()
	assert.NilError(t, err)
	defer lf.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	starts := make(chan int, 16)
	var log lockedBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	})
	go func() {
		for n := 1; ctx.Err() == nil; n++ {
			// Like systemd: start the service when the socket has a
			// connection waiting, hand it the socket, wait for it to exit.
			if !readable(ctx, int(lf.Fd())) {
				return
			}
			cmd := exec.CommandContext(ctx, "sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=agent exec "$0" "$@"`,
				bins.agent, "--config", a.cfgPath)
			cmd.ExtraFiles = []*os.File{lf}
			cmd.Stdout, cmd.Stderr = &log, &log
			if cmd.Start() != nil {
				return
			}
			starts <- n
			cmd.Wait()
		}
	}()

	ctr := session(t, alice, "echo hi > /root/hi.txt")
	r := a.cli(t, alice, "sessions", "--json")
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Equal(t, <-starts, 1)
	waitFor(t, 20*time.Second, func() bool { return strings.Count(log.String(), `"reason":"idle"`) == 1 })

	// The next request starts a new agent, which serves it.
	task, r := commitJSON(t, a, alice, ctr)
	assert.Equal(t, task.State, api.StateSucceeded, "%s", r)
	assert.Equal(t, <-starts, 2)
	_, err = os.Stat(task.Archive.Path)
	assert.NilError(t, err)
	// The freeze kept it running: it exited only after the task ended.
	waitFor(t, 20*time.Second, func() bool { return strings.Count(log.String(), `"reason":"idle"`) == 2 })
	// And the task outlives the agent run that did it.
	r = a.cli(t, alice, "status", "--json", task.ID)
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Equal(t, <-starts, 3)
	assert.Check(t, is.Contains(r.stdout, `"state": "succeeded"`))
}

// readable waits until fd has a connection pending.
func readable(ctx context.Context, fd int) bool {
	for ctx.Err() == nil {
		n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 200)
		if n > 0 {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSystemdUnitsVerify checks the shipped units with systemd's own
// checker, pointed at the binary under test.
func TestSystemdUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	assert.NilError(t, err, "systemd-analyze is needed (Debian package systemd)")
	dir := t.TempDir()
	units := []string{"baicommit-agent.socket", "baicommit-agent-tcp.socket", "baicommit-agent.service", "baicommit-manager.service"}
	var paths []string
	for _, name := range units {
		b, err := os.ReadFile(filepath.Join("..", "..", "systemd", name))
		assert.NilError(t, err)
		s := strings.ReplaceAll(string(b), "/usr/local/bin/baicommit-agent", bins.agent)
		s = strings.ReplaceAll(s, "/usr/local/bin/baicommit-manager", bins.manager)
		// The manager's account is a site's choice; verify checks that it exists.
		s = strings.ReplaceAll(s, "=baicommit\n", "="+managerUser+"\n")
		assert.NilError(t, os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644))
		paths = append(paths, filepath.Join(dir, name))
	}
	out, err := exec.Command(sa, append([]string{"verify"}, paths...)...).CombinedOutput()
	assert.NilError(t, err, "systemd-analyze verify:\n%s", out)
	for _, line := range strings.Split(string(out), "\n") {
		assert.Check(t, !strings.Contains(line, "baicommit"), "systemd-analyze complains: %s", line)
	}
}
