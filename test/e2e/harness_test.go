// Package e2e runs baicommit against the real things it talks to: rootless
// Podman as unprivileged test users, the agent started by hand and through
// socket activation, systemd's unit checker. It needs root and the test
// users that scripts/setup.sh creates; run it through scripts/test.sh.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	"gotest.tools/v3/poll"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
)

const (
	alice     = "bcalice"
	bob       = "bcbob"
	baseImage = "localhost/busybox:latest"
	node      = "e2e-node"
)

// bins holds the binaries under test, copied where every user can run them.
var bins struct{ dir, agent, cli, manager, sim string }

func TestMain(m *testing.M) {
	// Started again as a test user to attack (attacker_test.go).
	runAttacker()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "!!! e2e: these tests need root (they start the agent and act as test users); run scripts/test.sh as root")
		os.Exit(1)
	}
	for _, u := range []string{alice, bob} {
		if _, err := user.Lookup(u); err != nil {
			fmt.Fprintf(os.Stderr, "!!! e2e: test user %s is missing: run scripts/setup.sh first\n", u)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "baicommit-e2e-bin-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err == nil {
		err = installBinaries(dir)
	}
	if err == nil {
		err = installAttacker(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "!!! e2e:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// installBinaries copies the binaries of BAICOMMIT_BIN_DIR (built by
// `make e2e`), or builds them with `make build build-sim` (the Makefile is
// the one place that knows the build tags), into dir.
func installBinaries(dir string) error {
	bins.dir = dir
	bins.agent = filepath.Join(dir, "baicommit-agent")
	bins.cli = filepath.Join(dir, "baicommit")
	bins.manager = filepath.Join(dir, "baicommit-manager")
	bins.sim = filepath.Join(dir, "baicommit-sim")
	src := os.Getenv("BAICOMMIT_BIN_DIR")
	if src == "" {
		// go test runs in this package's directory, two below the root.
		cmd := exec.Command("make", "--no-print-directory", "-C", "../..", "build", "build-sim", "BIN="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("make build: %v: %s", err, out)
		}
		return nil
	}
	if _, err := os.Stat(filepath.Join(src, "baicommit-sim")); err != nil {
		// `make build` alone does not build the simulation.
		cmd := exec.Command("make", "--no-print-directory", "-C", "../..", "build-sim", "BIN="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("make build-sim: %v: %s", err, out)
		}
	} else if out, err := exec.Command("install", "-m", "0755", filepath.Join(src, "baicommit-sim"), dir).CombinedOutput(); err != nil {
		return fmt.Errorf("install baicommit-sim: %v: %s", err, out)
	}
	for _, name := range []string{"baicommit-agent", "baicommit", "baicommit-manager", "baicommit-epilog"} {
		if out, err := exec.Command("install", "-m", "0755", filepath.Join(src, name), dir).CombinedOutput(); err != nil {
			return fmt.Errorf("install %s: %v: %s", name, err, out)
		}
	}
	return nil
}

// result is what a command printed and how it ended.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// runAs runs argv as the named user with a login-like minimal environment,
// as a user's own shell on the node would.
func runAs(t *testing.T, who string, argv ...string) result {
	t.Helper()
	return runAsIn(t, who, nil, argv...)
}

func runAsIn(t *testing.T, who string, stdin io.Reader, argv ...string) result {
	t.Helper()
	env := []string{"HOME=/home/" + who, "USER=" + who, "LOGNAME=" + who, "PATH=/usr/local/bin:/usr/bin:/bin"}
	return runAsEnv(t, who, stdin, env, argv...)
}

// runAsEnv runs argv as who with exactly env, from the root directory.
func runAsEnv(t *testing.T, who string, stdin io.Reader, env []string, argv ...string) result {
	t.Helper()
	args := append(append([]string{"-u", who, "--", "/usr/bin/env", "-i"}, env...), argv...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runuser", args...)
	cmd.Dir = "/"
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if err != nil {
		r.code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		}
	}
	return r
}

// podman runs podman as who and fails the test if it fails.
func podman(t *testing.T, who string, args ...string) string {
	t.Helper()
	r := runAs(t, who, append([]string{"podman"}, args...)...)
	assert.Equal(t, r.code, 0, "podman %v as %s: %s", args, who, r)
	return strings.TrimSpace(r.stdout)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// session starts a rootless container for who, runs setup in it (a shell
// command) and removes it when the test ends.
func session(t *testing.T, who, setup string, runArgs ...string) string {
	t.Helper()
	name := "e2e-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "-" + randHex(3)
	args := append([]string{"run", "-d", "--network=none", "--name", name}, runArgs...)
	args = append(args, baseImage, "sleep", "3600")
	podman(t, who, args...)
	t.Cleanup(func() { runAs(t, who, "podman", "rm", "-f", "-t", "0", name) })
	if setup != "" {
		podman(t, who, "exec", name, "sh", "-c", setup)
	}
	return name
}

// agentProc is one baicommit-agent under test.
type agentProc struct {
	t       *testing.T
	dir     string // private root of this agent's files, traversable by users
	sock    string
	cfgPath string
	save    string // save root (mode 1777, like a shared scratch area)
	cmd     *exec.Cmd
	log     *lockedBuffer
	done    chan struct{}
	// listen are more --listen addresses, e.g. tcp://127.0.0.1:PORT.
	listen []string
}

type agentOpt func(cfg map[string]string)

// withSave sets the save root (save_path is root/{user}).
func withSave(root string) agentOpt {
	return func(cfg map[string]string) {
		cfg["save_path"] = strconv.Quote(root + "/{user}")
		cfg["save_roots"] = "[" + strconv.Quote(root) + "]"
	}
}

func withKey(k, v string) agentOpt { return func(cfg map[string]string) { cfg[k] = v } }

// newAgent writes a configuration for an agent in a fresh directory.
func newAgent(t *testing.T, opts ...agentOpt) *agentProc {
	t.Helper()
	dir, err := os.MkdirTemp("", "baicommit-e2e-")
	assert.NilError(t, err)
	assert.NilError(t, os.Chmod(dir, 0o755))
	a := &agentProc{t: t, dir: dir, sock: filepath.Join(dir, "agent.sock"), cfgPath: filepath.Join(dir, "agent.toml"),
		save: filepath.Join(dir, "save")}
	assert.NilError(t, os.Mkdir(a.save, 0o777))
	assert.NilError(t, os.Chmod(a.save, os.ModeSticky|0o777))
	cfg := map[string]string{
		"node_name":              strconv.Quote(node),
		"state_dir":              strconv.Quote(filepath.Join(dir, "state")),
		"run_dir":                strconv.Quote(filepath.Join(dir, "run")),
		"transient_service_idle": `"120s"`,
		"idle_exit":              `"0s"`,
	}
	withSave(a.save)(cfg)
	for _, o := range opts {
		o(cfg)
	}
	var b strings.Builder
	for k, v := range cfg {
		fmt.Fprintf(&b, "%s = %s\n", k, v)
	}
	assert.NilError(t, os.WriteFile(a.cfgPath, []byte(b.String()), 0o644))
	t.Cleanup(func() {
		a.stop()
		// Transient Podman services this agent started exit when idle;
		// do not leave them for the next test.
		killServices(filepath.Join(dir, "run"), syscall.SIGTERM)
		if t.Failed() {
			t.Logf("agent log:\n%s", a.log)
		}
		exec.Command("umount", "-l", filepath.Join(dir, "small")).Run()
		os.RemoveAll(dir)
	})
	a.log = &lockedBuffer{}
	return a
}

// start runs the agent listening on its socket (no socket activation).
func (a *agentProc) start() *agentProc {
	a.t.Helper()
	os.Remove(a.sock) // a killed agent leaves its socket file behind
	args := []string{"--config", a.cfgPath, "--listen", "unix://" + a.sock}
	for _, l := range a.listen {
		args = append(args, "--listen", l)
	}
	a.cmd = exec.Command(bins.agent, args...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	assert.NilError(a.t, a.cmd.Start())
	a.done = make(chan struct{})
	go func() { a.cmd.Wait(); close(a.done) }()
	poll.WaitOn(a.t, func(poll.LogT) poll.Result {
		if c, err := net.Dial("unix", a.sock); err == nil {
			c.Close()
			return poll.Success()
		}
		return poll.Continue("agent socket not there yet")
	}, poll.WithTimeout(20*time.Second))
	return a
}

// kill ends the agent at once, as a crash or the OOM killer would.
func (a *agentProc) kill() {
	a.t.Helper()
	assert.NilError(a.t, a.cmd.Process.Kill())
	<-a.done
	a.cmd = nil
}

func (a *agentProc) stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
	a.cmd = nil
}

// cli runs the baicommit CLI as who against this agent.
func (a *agentProc) cli(t *testing.T, who string, args ...string) result {
	t.Helper()
	return runAs(t, who, append([]string{bins.cli, "--agent", "unix://" + a.sock}, args...)...)
}

// client is a Go client of this agent, connected as root (the epilog's view).
func (a *agentProc) client(t *testing.T) *client.Client {
	c, err := client.New("unix://" + a.sock)
	assert.NilError(t, err)
	return c
}

// waitTask polls a task as root until it ends.
func (a *agentProc) waitTask(t *testing.T, id string) *api.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	task, err := a.client(t).Wait(ctx, id, 100*time.Millisecond, nil)
	assert.NilError(t, err)
	return task
}

// freezeUntil starts a freeze of who's container ctr and waits until it is
// in phase (for exporting: with bytes written), to interrupt it there.
func (a *agentProc) freezeUntil(t *testing.T, who, ctr, phase string) *api.Task {
	t.Helper()
	c := a.client(t)
	task, err := c.Freeze(context.Background(), api.FreezeRequest{Container: ctr, User: who})
	assert.NilError(t, err)
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		cur, err := c.Task(context.Background(), task.ID)
		if err != nil {
			return poll.Error(err)
		}
		if cur.Done() {
			return poll.Error(fmt.Errorf("the freeze ended before it could be interrupted: %s %s", cur.State, cur.Error))
		}
		if cur.Phase == phase && (phase != api.PhaseExporting || cur.Progress.BytesWritten > 0) {
			return poll.Success()
		}
		return poll.Continue("phase %s, %d bytes written", cur.Phase, cur.Progress.BytesWritten)
	}, poll.WithTimeout(3*time.Minute), poll.WithDelay(20*time.Millisecond))
	return task
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// listDir returns the names in dir (nil if it does not exist).
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	assert.NilError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// killServices sends sig to the Podman services an agent started below
// runDir (and their children), found by the variable the agent gives
// them, and returns how many processes it signalled.
func killServices(runDir string, sig syscall.Signal) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	n := 0
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("\x00BAICOMMIT_PODMAN_SOCKET="+runDir+"/")) && !bytes.HasPrefix(b, []byte("BAICOMMIT_PODMAN_SOCKET="+runDir+"/")) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err == nil && syscall.Kill(pid, sig) == nil {
			n++
		}
	}
	return n
}

// ownedBy reports whether fi belongs to uid.
func ownedBy(fi os.FileInfo, uid uint32) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == uid
}

// rootCmd runs a command as root and returns its combined output.
func rootCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
