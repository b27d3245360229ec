package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
)

// commitJSON runs `baicommit commit --wait --json` as who and decodes the task.
func commitJSON(t *testing.T, a *agentProc, who string, args ...string) (*api.Task, result) {
	t.Helper()
	r := a.cli(t, who, append([]string{"commit", "--wait", "--json"}, args...)...)
	var task api.Task
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &task), "commit output is not a task: %s", r)
	return &task, r
}

// loadArchive loads an archive into who's Podman as who would (`podman
// load -i`, which every Podman takes for the archives a freeze writes),
// and returns the loaded image's name.
func loadArchive(t *testing.T, who, path string) string {
	t.Helper()
	r := runAs(t, who, "podman", "load", "-i", path)
	assert.Equal(t, r.code, 0, "podman load -i: %s", r)
	out := r.stdout + r.stderr
	i := strings.LastIndex(out, "Loaded image")
	assert.Assert(t, i >= 0, "podman load said: %s", out)
	line := strings.TrimSpace(strings.SplitN(out[i:], "\n", 2)[0])
	name := strings.TrimSpace(line[strings.Index(line, ":")+1:])
	t.Cleanup(func() { runAs(t, who, "podman", "rmi", "-f", name) })
	return name
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	assert.NilError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	assert.NilError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

func uidOf(t *testing.T, who string) uint32 {
	t.Helper()
	u, err := user.Lookup(who)
	assert.NilError(t, err)
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	assert.NilError(t, err)
	return uint32(uid)
}

func TestFreezeRunningSession(t *testing.T) {
	a := newAgent(t).start()
	ctr := session(t, alice, "echo 'my precious results' > /root/result.txt",
		"-e", "API_TOKEN=hunter2", "-e", "KEEP_ME=yes")

	task, r := commitJSON(t, a, alice, "--tag", "localhost/alice/analysis:v1", ctr)
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Equal(t, task.State, api.StateSucceeded, "%s", r)
	assert.Equal(t, task.Owner, alice)
	assert.Equal(t, task.Node, node)
	assert.Equal(t, task.Image, "localhost/alice/analysis:v1")
	assert.Assert(t, strings.HasSuffix(task.ID, "."+node), "task ids name their node: %s", task.ID)
	assert.Assert(t, task.Archive != nil)
	path := task.Archive.Path
	assert.Equal(t, filepath.Dir(path), filepath.Join(a.save, alice))
	assert.Assert(t, strings.HasSuffix(path, ".tar.gz"))

	// Owned by the user, with the configured mode; no leftovers beside it.
	var st syscall.Stat_t
	assert.NilError(t, syscall.Stat(path, &st))
	assert.Equal(t, st.Uid, uidOf(t, alice), "archive must belong to the session's owner")
	assert.Equal(t, os.FileMode(st.Mode).Perm(), os.FileMode(0o600))
	// The directory made for it is the owner's alone, whatever their group.
	assert.NilError(t, syscall.Stat(filepath.Dir(path), &st))
	assert.Equal(t, st.Uid, uidOf(t, alice))
	assert.Equal(t, os.FileMode(st.Mode).Perm(), os.FileMode(0o700))
	for _, n := range listDir(t, filepath.Dir(path)) {
		assert.Assert(t, !strings.HasSuffix(n, ".partial"), "leftover temporary file %s", n)
	}

	// The digest the task reports is the file's, and so is the sidecar's.
	sum := fileSHA256(t, path)
	assert.Equal(t, task.Archive.SHA256, sum)
	fi, err := os.Stat(path)
	assert.NilError(t, err)
	assert.Equal(t, task.Archive.Size, fi.Size())
	var sc api.Sidecar
	b, err := os.ReadFile(task.Archive.Sidecar)
	assert.NilError(t, err)
	assert.NilError(t, json.Unmarshal(b, &sc))
	assert.Equal(t, sc.SHA256, sum)
	assert.Equal(t, sc.Size, fi.Size())
	assert.Equal(t, sc.Archive, filepath.Base(path))
	assert.Equal(t, sc.SourceContainer, ctr)
	assert.Equal(t, sc.User, alice)
	assert.Equal(t, sc.Node, node)
	assert.Equal(t, sc.BaseImage, baseImage)
	assert.Equal(t, sc.Task, task.ID)

	// The intermediate image is gone from the user's Podman.
	left := podman(t, alice, "images", "-q", "--filter", "label=io.baicommit.task="+task.ID)
	assert.Equal(t, left, "", "intermediate image left behind")

	// The archive loads and holds the user's file, labels and a scrubbed env.
	img := loadArchive(t, alice, path)
	assert.Equal(t, img, "localhost/alice/analysis:v1")
	out := podman(t, alice, "run", "--rm", "--network=none", img, "cat", "/root/result.txt")
	assert.Equal(t, out, "my precious results")
	labels := podman(t, alice, "image", "inspect", "--format", "{{json .Labels}}", img)
	assert.Check(t, is.Contains(labels, `"io.baicommit.source.container":"`+ctr+`"`))
	assert.Check(t, is.Contains(labels, `"io.baicommit.user":"`+alice+`"`))
	assert.Check(t, is.Contains(labels, `"io.baicommit.node":"`+node+`"`))
	env := podman(t, alice, "image", "inspect", "--format", "{{json .Config.Env}}", img)
	assert.Check(t, is.Contains(env, "KEEP_ME=yes"))
	assert.Check(t, !strings.Contains(env, "hunter2"), "secret leaked into the image: %s", env)
	// Nowhere in the archive either (Docker configs carry the env twice).
	raw, err := rootCmd("sh", "-c", `gunzip -c "$0" | grep -c hunter2 || true`, path)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(strings.TrimSpace(raw), "0"), "the secret's value is in the archive")
	assert.Check(t, is.Contains(strings.Join(task.Warnings, "\n"), "API_TOKEN"))
	// A running container is paused for the commit where the runtime can;
	// rootless on cgroup v1 it cannot, and the task must say so.
	if podman(t, alice, "info", "--format", "{{.Host.CgroupsVersion}}") == "v1" {
		assert.Check(t, is.Contains(strings.Join(task.Warnings, "\n"), "could not be paused"))
	} else {
		assert.Check(t, !strings.Contains(strings.Join(task.Warnings, "\n"), "paused"), "%v", task.Warnings)
	}

	// The CLI shows the task to its owner.
	r = a.cli(t, alice, "list", "--json")
	assert.Equal(t, r.code, 0, "%s", r)
	var listed struct {
		Tasks []api.Task `json:"tasks"`
	}
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &listed))
	tasks := listed.Tasks
	assert.Assert(t, len(tasks) == 1 && tasks[0].ID == task.ID, "%s", r)
	r = a.cli(t, alice, "status", task.ID)
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Check(t, is.Contains(r.stdout, path))
	// Another user sees neither the task nor its details.
	r = a.cli(t, bob, "list", "--json")
	assert.Equal(t, strings.Join(strings.Fields(r.stdout), " "), `{ "tasks": [], "archives": [] }`, "%s", r)
	r = a.cli(t, bob, "status", task.ID)
	assert.Assert(t, r.code != 0, "%s", r)
}

func TestFreezeExitedSession(t *testing.T) {
	a := newAgent(t).start()
	ctr := session(t, alice, "echo 'written before the job ended' > /root/last.txt")
	podman(t, alice, "stop", "-t", "0", ctr)

	task, r := commitJSON(t, a, alice, ctr)
	assert.Equal(t, task.State, api.StateSucceeded, "%s", r)
	assert.Check(t, is.Len(task.Warnings, 0), "an exited container needs no pause: %v", task.Warnings)
	assert.Assert(t, strings.HasPrefix(task.Image, "localhost/baicommit/"+ctr+":"), task.Image)
	img := loadArchive(t, alice, task.Archive.Path)
	out := podman(t, alice, "run", "--rm", "--network=none", img, "cat", "/root/last.txt")
	assert.Equal(t, out, "written before the job ended")
}

func TestFreezeRefusals(t *testing.T) {
	a := newAgent(t).start()
	ctr := session(t, alice, "echo alice > /root/a.txt")

	for _, tc := range []struct {
		name, who string
		args      []string
		want      string
	}{
		{"unknown container", alice, []string{"no-such-session"}, "no container \"no-such-session\""},
		{"another user's container by name", bob, []string{ctr}, "no container"},
		{"another user's sessions", bob, []string{"--user", alice, ctr}, "not yours"},
		{"path trick in the name", alice, []string{"../../etc/passwd"}, "not a container name"},
		{"bad image name", alice, []string{"--tag", "../Up/Case:x", ctr}, "not a valid image name"},
		{"bad job id", alice, []string{"--job", "12;rm -rf /", ctr}, "not a Slurm job id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.cli(t, tc.who, append([]string{"commit", "--wait"}, tc.args...)...)
			assert.Equal(t, r.code, 1, "%s", r)
			assert.Check(t, is.Contains(r.stderr, tc.want))
		})
	}
	// The API answers with the status codes scripts rely on.
	bobClient := func(req api.FreezeRequest) error {
		r := runAs(t, bob, bins.cli, "--agent", "unix://"+a.sock, "commit", "--json", "--user", req.User, req.Container)
		if r.code == 0 {
			return nil
		}
		return errors.New(r.stderr)
	}
	assert.ErrorContains(t, bobClient(api.FreezeRequest{User: alice, Container: ctr}), "not yours")
	_, err := a.client(t).Freeze(context.Background(), api.FreezeRequest{Container: ctr})
	var apiErr *client.APIError
	assert.Assert(t, errors.As(err, &apiErr), "%v", err)
	assert.Equal(t, apiErr.Status, 400, "root has no rootless sessions: %v", err)
	_, err = a.client(t).Freeze(context.Background(), api.FreezeRequest{Container: "nope", User: alice})
	assert.Assert(t, errors.As(err, &apiErr))
	assert.Equal(t, apiErr.Status, 404)

	// Nothing was written for any of them.
	assert.Check(t, is.Len(listDir(t, a.save), 0))
}

func TestConcurrentFreezeOfOneSession(t *testing.T) {
	a := newAgent(t).start()
	ctr := session(t, alice, "busybox dd if=/dev/urandom of=/data bs=1M count=150 2>/dev/null")
	c := a.client(t)
	ctx := context.Background()
	first, err := c.Freeze(ctx, api.FreezeRequest{Container: ctr, User: alice})
	assert.NilError(t, err)
	_, err = c.Freeze(ctx, api.FreezeRequest{Container: ctr, User: alice})
	var apiErr *client.APIError
	assert.Assert(t, errors.As(err, &apiErr), "second freeze: %v", err)
	assert.Equal(t, apiErr.Status, 409)
	assert.Equal(t, apiErr.Task, first.ID, "the 409 names the running task")

	// While it runs, the session list shows the running freeze.
	r := a.cli(t, alice, "sessions", "--json")
	var sessions []api.Session
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &sessions), "%s", r)
	found := false
	for _, s := range sessions {
		if s.Name == ctr {
			found = true
			if s.Task != "" {
				assert.Equal(t, s.Task, first.ID)
			}
		}
	}
	assert.Assert(t, found, "sessions does not list %s: %s", ctr, r)

	done := a.waitTask(t, first.ID)
	assert.Equal(t, done.State, api.StateSucceeded, "%+v", done)
	assert.Assert(t, done.Progress.BytesRead > 150<<20, "progress counted %d bytes", done.Progress.BytesRead)
	// Once it ended, a new freeze may start.
	again, err := c.Freeze(ctx, api.FreezeRequest{Container: ctr, User: alice})
	assert.NilError(t, err)
	assert.Equal(t, a.waitTask(t, again.ID).State, api.StateSucceeded)
	assert.Assert(t, done.Archive.Path != again.Archive.Path, "two freezes must not share a name")
}

func TestAgentKilledMidExport(t *testing.T) {
	a := newAgent(t).start()
	ctr := session(t, alice, "busybox dd if=/dev/urandom of=/data bs=1M count=400 2>/dev/null")
	task := a.freezeUntil(t, alice, ctr, api.PhaseExporting)
	a.kill()

	dir := filepath.Join(a.save, alice)
	// The helper dies with the agent; nothing appears under a final name.
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		out, _ := rootCmd("pgrep", "-f", bins.agent+" as-owner ")
		if strings.TrimSpace(out) == "" {
			return poll.Success()
		}
		return poll.Continue("helper still running: %s", out)
	}, poll.WithTimeout(20*time.Second))
	for _, n := range listDir(t, dir) {
		assert.Assert(t, strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".partial"), "visible file after a crash: %s", n)
	}
	_, err := os.Stat(task.Archive.Path)
	assert.Assert(t, os.IsNotExist(err), "final name exists after a crash")

	a.start()
	got, err := a.client(t).Task(context.Background(), task.ID)
	assert.NilError(t, err)
	assert.Equal(t, got.State, api.StateFailed)
	assert.Check(t, is.Contains(got.Error, "agent restarted"))
	// In the background: the agent serves before its clean-ups are done.
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if left := listDir(t, dir); len(left) > 0 {
			return poll.Continue("the temporary file must be removed after the restart: %v", left)
		}
		return poll.Success()
	}, poll.WithTimeout(30*time.Second))
	// So is the intermediate image the dead agent had committed.
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if left := podman(t, alice, "images", "-q", "--filter", "label=io.baicommit.task="+task.ID); left != "" {
			return poll.Continue("intermediate image %s still there", left)
		}
		return poll.Success()
	}, poll.WithTimeout(time.Minute), poll.WithDelay(200*time.Millisecond))
}

func TestFullSavePath(t *testing.T) {
	a := newAgent(t)
	small := filepath.Join(a.dir, "small")
	assert.NilError(t, os.Mkdir(small, 0o755))
	out, err := rootCmd("mount", "-t", "tmpfs", "-o", "size=64m,mode=1777", "tmpfs", small)
	assert.NilError(t, err, out)
	withSaveRewrite(t, a, small)
	a.start()
	ctr := session(t, alice, "busybox dd if=/dev/urandom of=/data bs=1M count=40 2>/dev/null")

	// The freeze fits when it starts (the free-space check passes); then
	// someone else fills the filesystem while it writes.
	filled := make(chan error, 1)
	go func() {
		filled <- fillOnceWritten(filepath.Join(small, alice), filepath.Join(small, "other-users-file"))
	}()
	task, r := commitJSON(t, a, alice, ctr)
	assert.NilError(t, <-filled)
	assert.Equal(t, r.code, 1, "a failed freeze exits non-zero: %s", r)
	assert.Equal(t, task.State, api.StateFailed)
	assert.Check(t, is.Contains(task.Error, "full"))
	assert.Check(t, is.Contains(task.Error, "nothing was written"))
	assert.Check(t, is.Len(listDir(t, filepath.Join(small, alice)), 0), "partial files left on a full disk")
}

// fillOnceWritten waits (up to a minute) for something to appear in dir
// and then fills its filesystem with the file fill.
func fillOnceWritten(dir, fill string) error {
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Millisecond) {
		if es, _ := os.ReadDir(dir); len(es) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing appeared in %s", dir)
		}
	}
	f, err := os.Create(fill)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

func TestPlantedSymlinkIsNotFollowed(t *testing.T) {
	a := newAgent(t).start()
	ctr := session(t, alice, "echo x > /root/x")
	// Alice points her save directory at a directory of bob's choosing
	// (here one of her own, which is all she can write to anyway).
	target := filepath.Join(a.dir, "elsewhere")
	assert.NilError(t, os.Mkdir(target, 0o777))
	r := runAs(t, alice, "ln", "-s", target, filepath.Join(a.save, alice))
	assert.Equal(t, r.code, 0, "%s", r)

	task, r := commitJSON(t, a, alice, ctr)
	assert.Equal(t, task.State, api.StateFailed, "%s", r)
	assert.Check(t, is.Contains(task.Error, "symbolic link"))
	assert.Check(t, is.Len(listDir(t, target), 0), "the agent followed a planted symlink")
}

// withSaveRewrite points an agent's save path at root.
func withSaveRewrite(t *testing.T, a *agentProc, root string) {
	b, err := os.ReadFile(a.cfgPath)
	assert.NilError(t, err)
	s := strings.ReplaceAll(string(b), a.save, root)
	assert.NilError(t, os.WriteFile(a.cfgPath, []byte(s), 0o644))
	a.save = root
}

// TestFreezesQueueBeyondMaxParallel: a node freezes at most max_parallel
// sessions at once; the others wait, queued, and then run.
func TestFreezesQueueBeyondMaxParallel(t *testing.T) {
	a := newAgent(t, withKey("max_parallel", "1")).start()
	big := session(t, alice, "busybox dd if=/dev/urandom of=/data bs=1M count=150 2>/dev/null")
	small := session(t, alice, "echo small > /root/s.txt", "--label", "baicommit.job=4242")
	c := a.client(t)
	ctx := context.Background()
	first, err := c.Freeze(ctx, api.FreezeRequest{Container: big, User: alice})
	assert.NilError(t, err)
	second, err := c.Freeze(ctx, api.FreezeRequest{Container: small, User: alice})
	assert.NilError(t, err)
	cur, err := c.Task(ctx, second.ID)
	assert.NilError(t, err)
	assert.Equal(t, cur.State, api.StateQueued, "the second freeze must wait for the first")

	done1, done2 := a.waitTask(t, first.ID), a.waitTask(t, second.ID)
	assert.Equal(t, done1.State, api.StateSucceeded)
	assert.Equal(t, done2.State, api.StateSucceeded)
	assert.Assert(t, !done2.Started.Before(done1.Finished), "the queued freeze started before the first ended")
	// The session's job label names the job in the task and the sidecar.
	assert.Equal(t, done2.Job, "4242")
	b, err := os.ReadFile(done2.Archive.Sidecar)
	assert.NilError(t, err)
	assert.Check(t, is.Contains(string(b), `"job": "4242"`))
}

// TestDeadPodman: when the owner's Podman cannot be started or dies during
// a freeze, the user is told so and nothing is left behind.
func TestDeadPodman(t *testing.T) {
	t.Run("cannot start", func(t *testing.T) {
		a := newAgent(t, withKey("podman", `"/nonexistent/podman"`)).start()
		ctr := session(t, alice, "echo x > /root/x")
		r := a.cli(t, alice, "commit", "--wait", ctr)
		assert.Equal(t, r.code, 1, "%s", r)
		assert.Check(t, is.Contains(r.stderr, "cannot reach the Podman of "+alice))
		r = a.cli(t, alice, "sessions")
		assert.Equal(t, r.code, 1, "%s", r)
		assert.Check(t, is.Contains(r.stderr, "cannot reach the Podman of "+alice))
		assert.Check(t, is.Len(listDir(t, a.save), 0))
	})
	t.Run("dies during the commit", func(t *testing.T) {
		a := newAgent(t, withKey("freeze_method", `"commit"`)).start()
		ctr := session(t, alice, "busybox dd if=/dev/urandom of=/data bs=1M count=300 2>/dev/null")
		task := a.freezeUntil(t, alice, ctr, api.PhaseCommitting)
		assert.Assert(t, killServices(filepath.Join(a.dir, "run"), syscall.SIGKILL) > 0, "no transient podman service to kill")

		done := a.waitTask(t, task.ID)
		assert.Equal(t, done.State, api.StateFailed)
		assert.Check(t, is.Contains(done.Error, "podman commit"))
		assert.Check(t, is.Len(listDir(t, filepath.Join(a.save, alice)), 0))
		// The next freeze starts a new service and works.
		again, r := commitJSON(t, a, alice, ctr)
		assert.Equal(t, again.State, api.StateSucceeded, "%s", r)
	})
	t.Run("dies during a direct freeze", func(t *testing.T) {
		// The direct freeze reads the store itself: once it streams, the
		// user's Podman is not needed, and the freeze completes.
		a := newAgent(t).start()
		ctr := session(t, alice, "busybox dd if=/dev/urandom of=/data bs=1M count=300 2>/dev/null")
		task := a.freezeUntil(t, alice, ctr, api.PhaseExporting)
		assert.Assert(t, killServices(filepath.Join(a.dir, "run"), syscall.SIGKILL) > 0, "no transient podman service to kill")
		done := a.waitTask(t, task.ID)
		assert.Equal(t, done.State, api.StateSucceeded, done.Error)
		img := loadArchive(t, alice, done.Archive.Path)
		assert.Equal(t, podman(t, alice, "run", "--rm", "--network=none", img, "sh", "-c", "wc -c < /data"), "314572800")
	})
}

// TestAgentStoppedMidExport: SIGTERM (systemctl stop) during a freeze ends
// it cleanly: the task says why, and no file is left, not even a
// temporary one.
func TestAgentStoppedMidExport(t *testing.T) {
	a := newAgent(t).start()
	ctr := session(t, alice, "busybox dd if=/dev/urandom of=/data bs=1M count=400 2>/dev/null")
	task := a.freezeUntil(t, alice, ctr, api.PhaseExporting)
	a.stop()
	assert.Check(t, is.Len(listDir(t, filepath.Join(a.save, alice)), 0), "files left after a stop")

	a.start()
	got, err := a.client(t).Task(context.Background(), task.ID)
	assert.NilError(t, err)
	assert.Equal(t, got.State, api.StateFailed)
	assert.Check(t, is.Contains(got.Error, "agent was stopped"))
	assert.Equal(t, podman(t, alice, "images", "-q", "--filter", "label=io.baicommit.task="+task.ID), "")
}

// TestKeepImageAndArchiveMode: with keep_image the frozen image stays in
// the user's Podman under its name; archive_mode sets the files' mode, and
// the directories' follows (a project group's 0640: 0750).
func TestKeepImageAndArchiveMode(t *testing.T) {
	a := newAgent(t, withKey("keep_image", "true"), withKey("archive_mode", `"0640"`)).start()
	ctr := session(t, alice, "echo kept > /root/k.txt")
	task, r := commitJSON(t, a, alice, "--tag", "localhost/alice/kept:1", ctr)
	assert.Equal(t, task.State, api.StateSucceeded, "%s", r)
	t.Cleanup(func() { runAs(t, alice, "podman", "rmi", "-f", "localhost/alice/kept:1") })

	out := podman(t, alice, "run", "--rm", "--network=none", "localhost/alice/kept:1", "cat", "/root/k.txt")
	assert.Equal(t, out, "kept")
	for _, p := range []string{task.Archive.Path, task.Archive.Sidecar} {
		fi, err := os.Stat(p)
		assert.NilError(t, err)
		assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o640)), p)
	}
	fi, err := os.Stat(filepath.Dir(task.Archive.Path))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(fi.Mode().Perm(), os.FileMode(0o750)))
}

// TestSaveThroughSupplementaryGroup: a save location that the owner may
// write only as a member of a project group (mode 2770, no access for
// others) works, because the helper keeps the owner's groups.
func TestSaveThroughSupplementaryGroup(t *testing.T) {
	const group = "bcproject"
	if out, err := rootCmd("getent", "group", group); err != nil {
		out, err = rootCmd("groupadd", group)
		assert.NilError(t, err, out)
	}
	out, err := rootCmd("usermod", "-aG", group, alice)
	assert.NilError(t, err, out)

	a := newAgent(t)
	proj := filepath.Join(a.dir, "project")
	assert.NilError(t, os.Mkdir(proj, 0o755))
	out, err = rootCmd("sh", "-c", `chgrp "$0" "$1" && chmod 2770 "$1"`, group, proj)
	assert.NilError(t, err, out)
	withSaveRewrite(t, a, proj)
	a.start()
	ctr := session(t, alice, "echo team > /root/team.txt")

	task, r := commitJSON(t, a, alice, ctr)
	assert.Equal(t, task.State, api.StateSucceeded, "%s", r)
	assert.Equal(t, filepath.Dir(filepath.Dir(task.Archive.Path)), proj)
	img := loadArchive(t, alice, task.Archive.Path)
	assert.Equal(t, podman(t, alice, "run", "--rm", "--network=none", img, "cat", "/root/team.txt"), "team")
	// Bob, not in the group, is refused by the filesystem, and says so.
	ctrBob := session(t, bob, "echo bob > /root/b.txt")
	task, r = commitJSON(t, a, bob, ctrBob)
	assert.Equal(t, task.State, api.StateFailed, "%s", r)
	assert.Check(t, is.Contains(task.Error, "permission denied"))
}
