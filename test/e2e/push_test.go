package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
)

// readSidecar reads the sidecar at path.
func readSidecar(t *testing.T, path string) api.Sidecar {
	t.Helper()
	b, err := os.ReadFile(path)
	assert.NilError(t, err)
	var sc api.Sidecar
	assert.NilError(t, json.Unmarshal(b, &sc), "%s", b)
	return sc
}

// assertNoSecret fails if secret appears in any file below dir.
func assertNoSecret(t *testing.T, dir, secret string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		assert.Check(t, !strings.Contains(string(b), secret), "the password is in %s", path)
		return nil
	})
	assert.NilError(t, err)
}

// pullAndCat pulls ref as who with the registry's credentials and prints
// file from a container of it.
func pullAndCat(t *testing.T, reg *testRegistry, who, ref, file string) string {
	t.Helper()
	podman(t, who, "pull", "--tls-verify=false", "--creds", reg.creds(), ref)
	t.Cleanup(func() { runAs(t, who, "podman", "rmi", "-f", ref) })
	return podman(t, who, "run", "--rm", "--network=none", ref, "cat", file)
}

func TestPushOnFreeze(t *testing.T) {
	reg := startRegistry(t, "alice")
	a := newAgent(t).start()
	ctr := session(t, alice, "echo 'pushed results' > /root/pushed.txt")
	repo := "alice/frozen-" + randHex(3)
	ref := reg.addr + "/" + repo + ":v1"

	task, r := commitJSON(t, a, alice, "--push", ref, "--creds", reg.creds(), "--tls-verify=false", ctr)
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Equal(t, task.State, api.StateSucceeded, "%s", r)
	assert.Assert(t, task.Push != nil, "%s", r)
	assert.Equal(t, task.Push.State, api.PushSucceeded, "%s", r)
	assert.Equal(t, task.Push.Ref, ref)
	assert.Assert(t, strings.HasPrefix(task.Push.Digest, "sha256:"), task.Push.Digest)

	// The registry holds exactly that manifest, and it runs with the file.
	assert.Equal(t, reg.manifestDigest(t, repo, "v1"), task.Push.Digest)
	assert.Equal(t, pullAndCat(t, reg, alice, ref, "/root/pushed.txt"), "pushed results")

	// The sidecar remembers the push; the archive is still there.
	sc := readSidecar(t, task.Archive.Sidecar)
	assert.Assert(t, is.Len(sc.Pushes, 1))
	assert.Equal(t, sc.Pushes[0].Ref, ref)
	assert.Equal(t, sc.Pushes[0].Digest, task.Push.Digest)
	assert.Equal(t, sc.SHA256, fileSHA256(t, task.Archive.Path))

	// The password is nowhere: not in the task, the store, the log, the
	// sidecar.
	assert.Check(t, !strings.Contains(r.stdout+r.stderr, reg.pass))
	assert.Check(t, !strings.Contains(a.log.String(), reg.pass))
	assertNoSecret(t, filepath.Join(a.dir, "state"), reg.pass)
	assertNoSecret(t, a.save, reg.pass)

	// list finds the archive through its sidecar, with the push target,
	// in the save directory the agent reports, and skips a broken sidecar.
	junk := filepath.Join(filepath.Dir(task.Archive.Path), "junk.json")
	assert.NilError(t, os.WriteFile(junk, []byte("{not json"), 0o644))
	lr := a.cli(t, alice, "list", "--json")
	assert.Equal(t, lr.code, 0, "%s", lr)
	var out struct {
		Tasks    []api.Task `json:"tasks"`
		Archives []struct {
			Path   string           `json:"path"`
			Source string           `json:"source_container"`
			Pushes []api.PushRecord `json:"pushes"`
		} `json:"archives"`
	}
	assert.NilError(t, json.Unmarshal([]byte(lr.stdout), &out), "%s", lr)
	assert.Assert(t, is.Len(out.Tasks, 1))
	assert.Assert(t, is.Len(out.Archives, 1), "%s", lr)
	assert.Equal(t, out.Archives[0].Path, task.Archive.Path)
	assert.Equal(t, out.Archives[0].Source, ctr)
	assert.Equal(t, out.Archives[0].Pushes[0].Ref, ref)
	assert.Check(t, is.Contains(lr.stderr, "junk.json"))
	lt := a.cli(t, alice, "list")
	assert.Equal(t, lt.code, 0, "%s", lt)
	assert.Check(t, is.Contains(lt.stdout, "PUSHED TO"))
	assert.Check(t, is.Contains(lt.stdout, ref))
	assert.Check(t, is.Contains(lt.stdout, task.Archive.Path))
	// bob sees none of alice's archives.
	lb := a.cli(t, bob, "list", "--json", "--dir", a.save)
	assert.Equal(t, lb.code, 0, "%s", lb)
	assert.Check(t, !strings.Contains(lb.stdout, task.Archive.Path), "%s", lb)
}

func TestPushWrongPassword(t *testing.T) {
	reg := startRegistry(t, "alice")
	a := newAgent(t).start()
	ctr := session(t, alice, "echo x > /root/x.txt")
	repo := "alice/denied-" + randHex(3)
	ref := reg.addr + "/" + repo + ":v1"
	wrong := "wrong-" + randHex(6)

	task, r := commitJSON(t, a, alice, "--push", ref, "--creds", "alice:"+wrong, "--tls-verify=false", ctr)
	assert.Equal(t, r.code, 1, "%s", r)
	// The freeze itself succeeded: the archive is there and intact.
	assert.Equal(t, task.State, api.StateSucceeded, "%s", r)
	assert.Assert(t, task.Archive != nil)
	assert.Equal(t, fileSHA256(t, task.Archive.Path), task.Archive.SHA256)
	// The push did not, and says what to do.
	assert.Assert(t, task.Push != nil)
	assert.Equal(t, task.Push.State, api.PushFailed)
	assert.Equal(t, task.Push.Digest, "")
	t.Logf("push error: %s", task.Push.Error)
	assert.Check(t, is.Contains(task.Push.Error, "authentication required/denied"))
	assert.Check(t, is.Contains(task.Push.Error, "--creds"))
	assert.Check(t, is.Contains(task.Push.Error, "podman login"))
	assert.Check(t, is.Contains(r.stderr, "pushing it to "+ref+" failed"))
	// Nothing is marked pushed anywhere.
	assert.Check(t, is.Len(readSidecar(t, task.Archive.Sidecar).Pushes, 0))
	assert.Equal(t, reg.manifestDigest(t, repo, "v1"), "")
	st := a.cli(t, alice, "status", "--json", task.ID)
	assert.Check(t, is.Contains(st.stdout, `"state": "failed"`))
	assert.Check(t, !strings.Contains(st.stdout, `"state": "pushed"`))
	// The wrong password is not repeated anywhere either.
	assert.Check(t, !strings.Contains(r.stdout+r.stderr, wrong))
	assert.Check(t, !strings.Contains(a.log.String(), wrong))
	assertNoSecret(t, filepath.Join(a.dir, "state"), wrong)
}

// A push by the agent uses the owner's credentials, read as the owner:
// alice's auth file works for alice and does nothing for bob.
func TestPushWithOwnersAuthFile(t *testing.T) {
	reg := startRegistry(t, "alice")
	a := newAgent(t).start()

	// alice logs in as she would, into an auth file only she can read.
	authDir := strings.TrimSpace(runAs(t, alice, "mktemp", "-d").stdout)
	assert.Assert(t, strings.HasPrefix(authDir, "/tmp/"), authDir)
	t.Cleanup(func() { os.RemoveAll(authDir) })
	authFile := filepath.Join(authDir, "auth.json")
	login := runAsIn(t, alice, strings.NewReader(reg.pass), "podman", "login", "--tls-verify=false",
		"--authfile", authFile, "--username", reg.user, "--password-stdin", reg.addr)
	assert.Equal(t, login.code, 0, "%s", login)
	fi, err := os.Stat(authFile)
	assert.NilError(t, err)
	assert.Equal(t, fi.Mode().Perm()&0o077, os.FileMode(0), "podman login left %s readable by others", authFile)

	ctr := session(t, alice, "echo 'via auth file' > /root/a.txt")
	ref := reg.addr + "/alice/authfile-" + randHex(3) + ":v1"
	task, r := commitJSON(t, a, alice, "--push", ref, "--authfile", authFile, "--tls-verify=false", ctr)
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Equal(t, task.Push.State, api.PushSucceeded, "%s", r)
	assert.Equal(t, pullAndCat(t, reg, alice, ref, "/root/a.txt"), "via auth file")

	// bob names alice's auth file: his push runs as bob, who cannot read it.
	bctr := session(t, bob, "echo bob > /root/b.txt")
	bref := reg.addr + "/alice/stolen-" + randHex(3) + ":v1"
	btask, br := commitJSON(t, a, bob, "--push", bref, "--authfile", authFile, "--tls-verify=false", bctr)
	assert.Equal(t, br.code, 1, "%s", br)
	assert.Equal(t, btask.State, api.StateSucceeded, "%s", br)
	assert.Equal(t, btask.Push.State, api.PushFailed)
	t.Logf("bob's push with alice's auth file: %s", btask.Push.Error)
	assert.Check(t, is.Contains(btask.Push.Error, "permission denied"), btask.Push.Error)
	assert.Equal(t, reg.manifestDigest(t, strings.TrimPrefix(strings.TrimSuffix(bref, ":v1"), reg.addr+"/"), "v1"), "")

	// And without any credentials bob's push is refused, not done with
	// someone else's.
	btask, br = commitJSON(t, a, bob, "--push", bref, "--tls-verify=false", bctr)
	assert.Equal(t, br.code, 1, "%s", br)
	assert.Equal(t, btask.Push.State, api.PushFailed)
	assert.Check(t, is.Contains(btask.Push.Error, "authentication required/denied"), btask.Push.Error)
}

// `baicommit push ARCHIVE REF` on a machine without Podman (a login node):
// nothing but the CLI, the archive and the network.
func TestPushArchiveWithoutPodman(t *testing.T) {
	reg := startRegistry(t, "alice")
	a := newAgent(t).start()
	ctr := session(t, alice, "echo 'from the login node' > /root/login.txt")
	task, r := commitJSON(t, a, alice, ctr)
	assert.Equal(t, r.code, 0, "%s", r)
	repo := "alice/login-" + randHex(3)
	ref := reg.addr + "/" + repo + ":v2"

	// No PATH to podman, no XDG_RUNTIME_DIR, no agent address.
	env := []string{"HOME=/home/" + alice, "USER=" + alice, "PATH=/nonexistent"}
	probe := runAsWithEnv(t, alice, env, "/bin/sh", "-c", "command -v podman")
	assert.Assert(t, probe.code != 0, "podman is reachable in the test's environment: %s", probe)

	pr := runAsWithEnv(t, alice, append(env, "BAICOMMIT_CREDS="+reg.creds()), bins.cli,
		"--agent", "unix:///nonexistent/agent.sock", "push", "--json", "--tls-verify=false", task.Archive.Path, ref)
	assert.Equal(t, pr.code, 0, "%s", pr)
	var out struct{ Ref, Digest, Sidecar string }
	assert.NilError(t, json.Unmarshal([]byte(pr.stdout), &out), "%s", pr)
	assert.Equal(t, out.Ref, ref)
	assert.Equal(t, reg.manifestDigest(t, repo, "v2"), out.Digest)
	assert.Equal(t, out.Sidecar, task.Archive.Sidecar)
	sc := readSidecar(t, task.Archive.Sidecar)
	assert.Assert(t, is.Len(sc.Pushes, 1))
	assert.Equal(t, sc.Pushes[0].Digest, out.Digest)
	// The sidecar was replaced by its owner and kept its mode.
	fi, err := os.Stat(task.Archive.Sidecar)
	assert.NilError(t, err)
	assert.Equal(t, fi.Mode().Perm(), os.FileMode(0o600))
	assert.Check(t, !strings.Contains(pr.stdout+pr.stderr, reg.pass))
	for _, n := range listDir(t, filepath.Dir(task.Archive.Path)) {
		assert.Check(t, !strings.HasSuffix(n, ".partial"), "leftover %s", n)
	}

	// What arrived runs, with the file inside.
	assert.Equal(t, pullAndCat(t, reg, alice, ref, "/root/login.txt"), "from the login node")

	// A wrong password from the CLI: a clear error, nothing recorded.
	bad := runAsWithEnv(t, alice, append(env, "BAICOMMIT_CREDS=alice:nope-"+randHex(4)), bins.cli,
		"push", "--tls-verify=false", task.Archive.Path, reg.addr+"/"+repo+":bad")
	assert.Equal(t, bad.code, 1, "%s", bad)
	assert.Check(t, is.Contains(bad.stderr, "authentication required/denied"))
	assert.Check(t, is.Len(readSidecar(t, task.Archive.Sidecar).Pushes, 1))
}

func TestRestoreArchive(t *testing.T) {
	a := newAgent(t).start()
	ctr := session(t, alice, "mkdir -p /work && echo 'restored results' > /work/result.txt")
	tag := "localhost/alice/frozen-" + randHex(3) + ":v1"
	task, r := commitJSON(t, a, alice, "--tag", tag, ctr)
	assert.Equal(t, r.code, 0, "%s", r)
	path := task.Archive.Path

	name := "localhost/alice/restored-" + randHex(3) + ":v1"
	t.Cleanup(func() { runAs(t, alice, "podman", "rmi", "-f", name, tag) })
	rr := runAs(t, alice, bins.cli, "restore", "--name", name, path)
	assert.Equal(t, rr.code, 0, "%s", rr)
	assert.Check(t, is.Contains(rr.stdout, "Verified "+path))
	assert.Check(t, is.Contains(rr.stdout, "podman run -it "+name))
	// A new session from it has the files of the old one.
	assert.Equal(t, podman(t, alice, "run", "--rm", "--network=none", name, "cat", "/work/result.txt"), "restored results")
	assert.Equal(t, podman(t, alice, "run", "--rm", "--network=none", tag, "cat", "/work/result.txt"), "restored results")
	podman(t, alice, "rmi", "-f", name, tag)

	// One byte changed after the freeze: refused before Podman sees it.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	assert.NilError(t, err)
	fi, err := f.Stat()
	assert.NilError(t, err)
	b := make([]byte, 1)
	_, err = f.ReadAt(b, fi.Size()/2)
	assert.NilError(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, fi.Size()/2)
	assert.NilError(t, err)
	assert.NilError(t, f.Close())

	bad := runAs(t, alice, bins.cli, "restore", "--name", name, path)
	assert.Equal(t, bad.code, 1, "%s", bad)
	t.Logf("restore of a changed archive: %s", bad.stderr)
	assert.Check(t, is.Contains(bad.stderr, "changed after the freeze"))
	assert.Check(t, is.Contains(bad.stderr, "refusing"))
	for _, img := range []string{name, tag} {
		ex := runAs(t, alice, "podman", "image", "exists", img)
		assert.Check(t, ex.code == 1, "%s was loaded from a tampered archive: %s", img, ex)
	}
	// So is a push of it.
	pr := runAs(t, alice, bins.cli, "push", "--tls-verify=false", path, "127.0.0.1:1/x/y:z")
	assert.Equal(t, pr.code, 1, "%s", pr)
	assert.Check(t, is.Contains(pr.stderr, "changed after the freeze"))
}

// loginAs runs `podman login` as who into authFile, a path who can write.
func loginAs(t *testing.T, reg *testRegistry, who, authFile string) {
	t.Helper()
	r := runAsIn(t, who, strings.NewReader(reg.pass), "podman", "login", "--tls-verify=false",
		"--authfile", authFile, "--username", reg.user, "--password-stdin", reg.addr)
	assert.Equal(t, r.code, 0, "%s", r)
}

// The agent's push finds the owner's credentials where the owner keeps
// them (here ~/.docker/config.json), with no --creds or --authfile, and
// the CLI does the same from a HOME of the user's choosing.
func TestPushWithOwnersDefaultAuthFiles(t *testing.T) {
	reg := startRegistry(t, "alice")
	a := newAgent(t).start()

	dockerDir := "/home/" + alice + "/.docker"
	if _, err := os.Stat(dockerDir); err == nil {
		t.Fatalf("!!! %s exists; this test creates it and removes it afterwards, so it will not touch an existing one", dockerDir)
	}
	t.Cleanup(func() { os.RemoveAll(dockerDir) })
	r := runAs(t, alice, "mkdir", "-m", "0700", dockerDir)
	assert.Equal(t, r.code, 0, "%s", r)
	loginAs(t, reg, alice, dockerDir+"/config.json")

	ctr := session(t, alice, "echo 'default auth' > /root/d.txt")
	repo := "alice/default-" + randHex(3)
	ref := reg.addr + "/" + repo + ":v1"
	task, cr := commitJSON(t, a, alice, "--push", ref, "--tls-verify=false", ctr)
	assert.Equal(t, cr.code, 0, "%s", cr)
	assert.Equal(t, task.Push.State, api.PushSucceeded, "%s", cr)
	assert.Equal(t, reg.manifestDigest(t, repo, "v1"), task.Push.Digest)

	// bob asks for the same push of his own session: alice's file is not
	// his, so the registry sees no credentials.
	bctr := session(t, bob, "echo bob > /root/b.txt")
	btask, br := commitJSON(t, a, bob, "--push", reg.addr+"/alice/bob-"+randHex(3)+":v1", "--tls-verify=false", bctr)
	assert.Equal(t, br.code, 1, "%s", br)
	assert.Equal(t, btask.Push.State, api.PushFailed)
	assert.Check(t, is.Contains(btask.Push.Error, "authentication required/denied"), btask.Push.Error)

	// The CLI, with a HOME whose ~/.config/containers/auth.json has the
	// login, and no XDG_RUNTIME_DIR, no podman.
	home := strings.TrimSpace(runAs(t, alice, "mktemp", "-d").stdout)
	t.Cleanup(func() { os.RemoveAll(home) })
	r = runAs(t, alice, "mkdir", "-p", home+"/.config/containers")
	assert.Equal(t, r.code, 0, "%s", r)
	loginAs(t, reg, alice, home+"/.config/containers/auth.json")
	cliRef := reg.addr + "/" + repo + ":cli"
	pr := runAsWithEnv(t, alice, []string{"HOME=" + home, "PATH=/nonexistent"}, bins.cli,
		"push", "--tls-verify=false", task.Archive.Path, cliRef)
	assert.Equal(t, pr.code, 0, "%s", pr)
	assert.Check(t, is.Contains(pr.stdout, "Pushed "+task.Archive.Path+" to "+cliRef))
	assert.Check(t, reg.manifestDigest(t, repo, "cli") != "")
	assert.Check(t, is.Len(readSidecar(t, task.Archive.Sidecar).Pushes, 2))
}
