package e2e

// The attacks of issue 13, each performed against the real components: one
// user trying to read, replace, block or outlast another user's freezes.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
)

// imageIDOf is the id of who's image name ("" if there is none).
func imageIDOf(t *testing.T, who, name string) string {
	t.Helper()
	r := runAs(t, who, "podman", "image", "inspect", "--format", "{{.Id}}", name)
	if r.code != 0 {
		return ""
	}
	return strings.TrimSpace(r.stdout)
}

// Bob, on a save root of mode 1777 (as the README's installation allows),
// makes alice's save directory before her first freeze (setgid, his group,
// mode 2777) and plants his own image there with a sidecar that claims to
// be hers, under a name alice already uses. Alice's freeze refuses to
// write into his directory, saying what to fix; her list does not show his
// archive; restore refuses it and her name stays on her image.
func TestForeignSaveDirectory(t *testing.T) {
	a := newAgent(t).start()
	aliceDir := filepath.Join(a.save, alice)
	r := runAs(t, bob, "sh", "-c", `mkdir "$0" && chmod 2777 "$0"`, aliceDir)
	assert.Equal(t, r.code, 0, "%s", r)

	// Bob's own image, frozen where his archives go, then planted as alice's.
	bobs := session(t, bob, "echo 'bob was here' > /root/owned.txt")
	btask, r := commitJSON(t, a, bob, bobs)
	assert.Equal(t, btask.State, api.StateSucceeded, "%s", r)
	name := "localhost/alice/analysis-" + randHex(3) + ":v1"
	podman(t, alice, "tag", baseImage, name)
	t.Cleanup(func() { runAs(t, alice, "podman", "rmi", "-f", name) })
	before := imageIDOf(t, alice, name)
	sc := readSidecar(t, btask.Archive.Sidecar)
	sc.User, sc.UID, sc.Image, sc.Archive = alice, int(uidOf(t, alice)), name, "planted.tar.gz"
	planted := filepath.Join(aliceDir, "planted.tar.gz")
	scJSON, err := json.Marshal(sc)
	assert.NilError(t, err)
	r = runAsIn(t, bob, strings.NewReader(string(scJSON)), "sh", "-c", `cp "$0" "$1" && cat > "$2"`,
		btask.Archive.Path, planted, api.SidecarName(planted))
	assert.Equal(t, r.code, 0, "%s", r)

	// Alice's freeze: refused, nothing of hers in bob's directory.
	ctr := session(t, alice, "echo 'alice secret' > /root/secret.txt")
	task, r := commitJSON(t, a, alice, ctr)
	assert.Equal(t, task.State, api.StateFailed, "alice's freeze went into bob's directory: %s", r)
	assert.Check(t, is.Contains(task.Error, aliceDir+" belongs to uid"), task.Error)
	assert.Check(t, is.Contains(task.Error, "not to you"))
	assert.Check(t, is.DeepEqual(listDir(t, aliceDir), []string{"planted.json", "planted.tar.gz"}))

	// Her list shows none of bob's files, and says someone tried.
	r = a.cli(t, alice, "list", "--json")
	assert.Equal(t, r.code, 0, "%s", r)
	var listed struct {
		Archives []api.ArchiveEntry `json:"archives"`
	}
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &listed), "%s", r)
	assert.Check(t, is.Len(listed.Archives, 0), "bob's planted archive is listed as alice's: %s", r)
	assert.Check(t, is.Contains(r.stderr, "claims to describe an archive of yours but belongs to uid"))
	status, body := curlAgent(t, a, alice, api.RouteArchives)
	assert.Equal(t, status, 200, body)
	assert.Check(t, !strings.Contains(body, "planted.tar.gz\""), "the agent lists bob's archive as alice's: %s", body)

	// Restore refuses it; alice's name still names her own image.
	r = runAs(t, alice, bins.cli, "restore", planted)
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "belongs to uid"), "%s", r)
	assert.Check(t, is.Equal(imageIDOf(t, alice, name), before), "restore moved alice's %s to bob's image", name)

	// Once the directory is hers, freezes work again.
	assert.NilError(t, os.RemoveAll(aliceDir))
	task, r = commitJSON(t, a, alice, "--tag", name, ctr)
	assert.Equal(t, task.State, api.StateSucceeded, "%s", r)
	var st syscall.Stat_t
	assert.NilError(t, syscall.Stat(aliceDir, &st))
	assert.Check(t, is.Equal(st.Uid, uidOf(t, alice)))
	assert.Check(t, is.Equal(os.FileMode(st.Mode).Perm(), os.FileMode(0o700)))

	// Her own archive records a name that now belongs to another image of
	// hers: restore leaves the name alone unless --name asks.
	r = runAs(t, alice, bins.cli, "restore", "--json", task.Archive.Path)
	assert.Equal(t, r.code, 0, "%s", r)
	var res struct {
		Image, ID string
		Warnings  []string
	}
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &res), "%s", r)
	t.Cleanup(func() { runAs(t, alice, "podman", "rmi", "-f", res.ID) })
	assert.Check(t, is.Equal(imageIDOf(t, alice, name), before), "restore moved an existing name without --name")
	assert.Check(t, is.Equal(res.Image, res.ID))
	assert.Check(t, is.Contains(strings.Join(res.Warnings, "\n"), name+" already names another image"))
	assert.Equal(t, podman(t, alice, "run", "--rm", "--network=none", res.ID, "cat", "/root/secret.txt"), "alice secret")
	r = runAs(t, alice, bins.cli, "restore", "--name", name, task.Archive.Path)
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Check(t, is.Equal(imageIDOf(t, alice, name), res.ID), "--name did not name the restored image")
}

// Higher up: the save path has a shared directory below the save root
// (site/{user}) that bob made first, sticky and open to all. Seen from
// alice's user namespace it looks like root's; the agent checks it with
// her host view before the helper writes, and refuses it.
func TestForeignSharedDirectory(t *testing.T) {
	a := newAgent(t)
	shared := filepath.Join(a.save, "site")
	withSaveRewrite(t, a, a.save)
	b, err := os.ReadFile(a.cfgPath)
	assert.NilError(t, err)
	cfg := strings.Replace(string(b), strconv.Quote(a.save+"/{user}"), strconv.Quote(shared+"/{user}"), 1)
	assert.NilError(t, os.WriteFile(a.cfgPath, []byte(cfg), 0o644))
	a.start()
	r := runAs(t, bob, "sh", "-c", `mkdir "$0" && chmod 1777 "$0"`, shared)
	assert.Equal(t, r.code, 0, "%s", r)
	ctr := session(t, alice, "echo a > /root/a.txt")
	task, r := commitJSON(t, a, alice, ctr)
	assert.Equal(t, task.State, api.StateFailed, "alice's freeze went below bob's directory: %s", r)
	assert.Check(t, is.Contains(task.Error, shared+" belongs to uid "+strconv.Itoa(int(uidOf(t, bob)))), task.Error)
	assert.Check(t, is.Len(listDir(t, shared), 0))

	// Made by root, as an admin would, it is fine.
	assert.NilError(t, os.RemoveAll(shared))
	assert.NilError(t, os.Mkdir(shared, 0o755))
	assert.NilError(t, os.Chmod(shared, os.ModeSticky|0o777))
	task, r = commitJSON(t, a, alice, ctr)
	assert.Equal(t, task.State, api.StateSucceeded, "%s", r)
	assert.Check(t, is.Equal(filepath.Dir(task.Archive.Path), filepath.Join(shared, alice)))
}
