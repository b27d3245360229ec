package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/units"
)

// archivesIn are the archive files below dir, and the sidecars.
func archivesIn(t *testing.T, dir string) (archives, sidecars []string) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			switch {
			case strings.HasSuffix(p, api.ArchiveSuffix):
				archives = append(archives, p)
			case strings.HasSuffix(p, api.SidecarSuffix):
				sidecars = append(sidecars, p)
			default:
				t.Errorf("unexpected file below %s: %s", dir, p)
			}
		}
		return nil
	})
	return archives, sidecars
}

// A freeze that would pass a quota is refused before anything is written,
// and the error says the usage, the limit and what to do.
func TestQuotaRefusesBeforeWriting(t *testing.T) {
	a := newAgent(t, withKey("quota", `{max_archives = 2, max_bytes = "12MiB"}`)).start()
	ctr := session(t, alice, "echo small > /root/small")
	for range 2 {
		task, r := commitJSON(t, a, alice, ctr)
		assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	}
	task, r := commitJSON(t, a, alice, ctr)
	assert.Check(t, is.Equal(task.State, api.StateFailed), "%s", r)
	assert.Check(t, is.Contains(task.Error, "you keep 2 archives"), task.Error)
	assert.Check(t, is.Contains(task.Error, "your quota is 2 archives"), task.Error)
	assert.Check(t, is.Contains(task.Error, "baicommit rm ARCHIVE"), task.Error)
	assert.Check(t, is.Contains(task.Error, "baicommit prune"), task.Error)
	assert.Check(t, is.Contains(task.Error, "nothing was written"), task.Error)
	arch, _ := archivesIn(t, filepath.Join(a.save, alice))
	assert.Check(t, is.Len(arch, 2))

	// Bytes: the freeze's uncompressed size counts.
	b := newAgent(t, withKey("quota", `{max_bytes = "12MiB"}`)).start()
	big := session(t, alice, "busybox dd if=/dev/urandom of=/root/big bs=1M count=16 2>/dev/null")
	task, r = commitJSON(t, b, alice, big)
	assert.Check(t, is.Equal(task.State, api.StateFailed), "%s", r)
	assert.Check(t, is.Regexp(`this freeze needs up to 1[6-9]\.\d MiB \(its uncompressed size\)`, task.Error), task.Error)
	assert.Check(t, is.Contains(task.Error, "but your quota is 12.0 MiB"), task.Error)
	assert.Check(t, is.Len(listDir(t, filepath.Join(b.save, alice)), 0), "nothing written, not even a temporary file")

	// max_freeze_size: the session's changes.
	c := newAgent(t, withKey("max_freeze_size", `"8MiB"`)).start()
	task, r = commitJSON(t, c, alice, big)
	assert.Check(t, is.Equal(task.State, api.StateFailed), "%s", r)
	assert.Check(t, is.Contains(task.Error, "the session's changes are 16.0 MiB, and this site freezes at most 8.0 MiB (max_freeze_size)"), task.Error)
}

// The free space of the save location is checked before writing: a
// filesystem too small for the freeze refuses it early and leaves nothing.
func TestFreeSpaceRefusesEarly(t *testing.T) {
	dir, err := os.MkdirTemp("", "baicommit-e2e-small-")
	assert.NilError(t, err)
	assert.NilError(t, os.Chmod(dir, 0o755))
	out, err := rootCmd("mount", "-t", "tmpfs", "-o", "size=4m,mode=1777", "e2e-small", dir)
	assert.NilError(t, err, "%s", out)
	t.Cleanup(func() { rootCmd("umount", "-l", dir); os.RemoveAll(dir) })
	small := dir
	a := newAgent(t, withSave(small)).start()
	ctr := session(t, alice, "busybox dd if=/dev/urandom of=/root/big bs=1M count=8 2>/dev/null")
	task, r := commitJSON(t, a, alice, ctr)
	assert.Check(t, is.Equal(task.State, api.StateFailed), "%s", r)
	assert.Check(t, is.Regexp(`has 4\.0 MiB free, and this freeze needs up to (8|9|10)\.\d MiB`, task.Error), task.Error)
	assert.Check(t, is.Len(listDir(t, filepath.Join(small, alice)), 0))
}

// A group's quota counts every member's archives in a setgid project
// directory of that group.
func TestGroupQuotaOnProjectDirectory(t *testing.T) {
	const group = "bce2eproj"
	if out, err := rootCmd("sh", "-c", "getent group "+group+" >/dev/null || groupadd "+group); err != nil {
		t.Fatalf("groupadd: %v: %s", err, out)
	}
	for _, u := range []string{alice, bob} {
		out, err := rootCmd("usermod", "-aG", group, u)
		assert.NilError(t, err, "%s", out)
	}
	t.Cleanup(func() {
		for _, u := range []string{alice, bob} {
			rootCmd("gpasswd", "-d", u, group)
		}
	})
	a := newAgent(t, withKey("archive_mode", `"0640"`), withKey("quota", `{groups = {`+group+` = {max_archives = 1}}}`))
	proj := filepath.Join(a.save, "proj")
	assert.NilError(t, os.Mkdir(proj, 0o775))
	out, err := rootCmd("chgrp", group, proj)
	assert.NilError(t, err, "%s", out)
	// setgid: what is made below is the group's; sticky: members cannot
	// remove each other's files.
	assert.NilError(t, os.Chmod(proj, 0o775|os.ModeSetgid|os.ModeSticky))
	withSaveRewrite(t, a, proj)
	a.start()
	mine := session(t, alice, "echo alice > /root/a")
	task, r := commitJSON(t, a, alice, mine)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	theirs := session(t, bob, "echo bob > /root/b")
	task, r = commitJSON(t, a, bob, theirs)
	assert.Check(t, is.Equal(task.State, api.StateFailed), "%s", r)
	assert.Check(t, is.Contains(task.Error, "group "+group+" keeps 1 archives"), task.Error)
	assert.Check(t, is.Contains(task.Error, "below "+proj), task.Error)
	u := usageOf(t, a, alice)
	assert.Assert(t, is.Len(u.Groups, 1), "%+v", u)
	assert.Check(t, is.Equal(u.Groups[0].Archives, 1))
	assert.Check(t, is.Equal(u.Groups[0].Quota.MaxArchives, 1))
}

func usageOf(t *testing.T, a *agentProc, who string) api.Usage {
	t.Helper()
	r := a.cli(t, who, "usage", "--json")
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	var u api.Usage
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &u), r.stdout)
	return u
}

// Retention keeps exactly what its rules say after each freeze, never the
// newest of a container and never an archive being read; prune --dry-run
// changes nothing; the user's own rules add to the site's.
func TestRetention(t *testing.T) {
	a := newAgent(t, withKey("retention", `{keep_per_container = 2}`)).start()
	ctr := session(t, alice, "echo v > /root/v")
	other := session(t, alice, "echo o > /root/o")
	var paths []string
	for i := range 4 {
		podman(t, alice, "exec", ctr, "sh", "-c", "echo "+strconv.Itoa(i)+" > /root/v")
		task, r := commitJSON(t, a, alice, ctr)
		assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
		paths = append(paths, task.Archive.Path)
		time.Sleep(1100 * time.Millisecond) // created times in whole seconds in names
	}
	task, r := commitJSON(t, a, alice, other)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	arch, sides := archivesIn(t, filepath.Join(a.save, alice))
	slices.Sort(arch)
	want := []string{paths[2], paths[3], task.Archive.Path}
	slices.Sort(want)
	assert.Check(t, is.DeepEqual(arch, want), "the newest 2 of ctr and other's only one")
	assert.Check(t, is.Len(sides, 3), "sidecars go with their archives")
	assert.Check(t, is.Contains(a.log.String(), "archive removed by the retention rules"))

	// The user's own rule: one per container. A dry run removes nothing.
	home := "/home/" + alice + "/.config/baicommit"
	r = runAs(t, alice, "sh", "-c", `mkdir -p "$0" && printf 'keep_per_container = 1\n' > "$0/retention.toml"`, home)
	assert.Equal(t, r.code, 0, "%s", r)
	t.Cleanup(func() { os.Remove(home + "/retention.toml") })
	r = a.cli(t, alice, "prune", "--dry-run", "--json")
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	var res api.PruneResult
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &res))
	assert.Check(t, res.DryRun)
	assert.Assert(t, is.Len(res.Removed, 1))
	assert.Check(t, is.Equal(res.Removed[0].Path, paths[2]))
	arch, _ = archivesIn(t, filepath.Join(a.save, alice))
	assert.Check(t, is.Len(arch, 3), "a dry run removes nothing")

	// An archive being read (a restore, a push: here a shared lock held
	// as alice would hold it) stays.
	held := pruneWhileRead(t, a, paths[2])
	held.Close()
	r = a.cli(t, alice, "prune")
	assert.Check(t, is.Equal(r.code, 0), "%s", r)
	assert.Check(t, is.Contains(r.stdout, "removed "+paths[2]), "%s", r)
	arch, _ = archivesIn(t, filepath.Join(a.save, alice))
	assert.Check(t, is.Len(arch, 2), "the newest of each container stays")
}

// rm removes the caller's archives with their sidecars, nobody else's;
// usage matches what du counts; a restore records its use.
func TestRmUsageAndLastUse(t *testing.T) {
	a := newAgent(t).start()
	ctr := session(t, alice, "echo one > /root/one")
	var tasks []*api.Task
	for range 3 {
		task, r := commitJSON(t, a, alice, ctr)
		assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
		tasks = append(tasks, task)
	}
	bobs := session(t, bob, "echo b > /root/b")
	bobTask, r := commitJSON(t, a, bob, bobs)
	assert.Assert(t, is.Equal(bobTask.State, api.StateSucceeded), "%s", r)

	u := usageOf(t, a, alice)
	out, err := rootCmd("sh", "-c", `find "$0" -type f \( -name '*.tar.gz' -o -name '*.json' \) -printf '%s\n' | awk '{ s += $1 } END { print s }'`, filepath.Join(a.save, alice))
	assert.NilError(t, err, out)
	du, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	assert.Check(t, is.Equal(u.Bytes, du), "usage is what du counts of the archives and sidecars")
	assert.Check(t, is.Equal(u.Archives, 3))
	assert.Assert(t, is.Len(u.ByContainer, 1))
	assert.Check(t, is.Equal(u.ByContainer[0].Container, ctr))
	r = a.cli(t, alice, "usage")
	assert.Check(t, is.Contains(r.stdout, "total"), "%s", r)

	// Another user's archive, a path outside, or a file that is not an
	// archive are refused, and nothing goes.
	r = a.cli(t, alice, "rm", bobTask.Archive.Path)
	assert.Check(t, r.code != 0, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "is not an archive below your save directory"), "%s", r)
	r = a.cli(t, alice, "rm", "/etc/passwd")
	assert.Check(t, r.code != 0, "%s", r)
	_, err = os.Stat(bobTask.Archive.Path)
	assert.Check(t, err, "bob's archive is still there")

	r = a.cli(t, alice, "rm", tasks[0].Archive.Path, tasks[1].Archive.Path)
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	assert.Check(t, is.Contains(r.stdout, "removed "+tasks[0].Archive.Path))
	for _, tk := range tasks[:2] {
		_, err := os.Stat(tk.Archive.Path)
		assert.Check(t, os.IsNotExist(err))
		_, err = os.Stat(tk.Archive.Sidecar)
		assert.Check(t, os.IsNotExist(err))
	}
	assert.Check(t, is.Equal(usageOf(t, a, alice).Archives, 1))

	// restore records the archive's last use in its sidecar.
	r = a.cli(t, alice, "restore", "--name", "localhost/alice/lastuse:v1", tasks[2].Archive.Path)
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	t.Cleanup(func() { runAs(t, alice, "podman", "rmi", "-f", "localhost/alice/lastuse:v1") })
	b, err := os.ReadFile(tasks[2].Archive.Sidecar)
	assert.NilError(t, err)
	var sc api.Sidecar
	assert.NilError(t, json.Unmarshal(b, &sc))
	assert.Check(t, time.Since(sc.LastUsed) < time.Minute, "last_used %v", sc.LastUsed)
}

// Commands run in the session before it is read: one that cleans a cache
// makes the archive smaller; one that fails is a warning (or aborts where
// the site says so); one that hangs is killed at its deadline; one that
// does not parse is a usage error naming the flag.
func TestBeforeFreezeCommands(t *testing.T) {
	a := newAgent(t, withKey("before_freeze_timeout", `"3s"`)).start()
	ctr := session(t, alice, "mkdir -p /root/.cache/pip && busybox dd if=/dev/urandom of=/root/.cache/pip/wheel bs=1M count=12 2>/dev/null && echo keep > /root/keep")
	plain, r := commitJSON(t, a, alice, ctr)
	assert.Assert(t, is.Equal(plain.State, api.StateSucceeded), "%s", r)
	cleaned, r := commitJSON(t, a, alice, "--before", "busybox rm -rf /root/.cache", ctr)
	assert.Assert(t, is.Equal(cleaned.State, api.StateSucceeded), "%s", r)
	assert.Check(t, cleaned.Archive.Size < plain.Archive.Size-10<<20, "cleaned %d, plain %d", cleaned.Archive.Size, plain.Archive.Size)
	assert.Assert(t, is.Len(cleaned.Before, 1))
	assert.Check(t, is.Equal(cleaned.Before[0].Source, "user"))
	assert.Check(t, is.Equal(cleaned.Before[0].ExitCode, 0))

	failed, r := commitJSON(t, a, alice, "--before", `sh -c "echo no cache here >&2; exit 3"`, ctr)
	assert.Assert(t, is.Equal(failed.State, api.StateSucceeded), "%s", r)
	assert.Check(t, is.Contains(strings.Join(failed.Warnings, "\n"), "exited with status 3; the session was frozen anyway"))
	assert.Check(t, is.Contains(failed.Before[0].Output, "no cache here"))

	t0 := time.Now()
	hung, r := commitJSON(t, a, alice, "--before", "busybox sleep 300", ctr)
	assert.Assert(t, is.Equal(hung.State, api.StateSucceeded), "%s", r)
	assert.Check(t, time.Since(t0) < time.Minute)
	assert.Check(t, is.Contains(strings.Join(hung.Warnings, "\n"), "did not end within 3s and was killed"))
	ps := podman(t, alice, "exec", ctr, "busybox", "ps")
	assert.Check(t, !strings.Contains(ps, "sleep 300"), "the hung command still runs:\n%s", ps)

	r = a.cli(t, alice, "commit", "--before", `echo "unbalanced`, ctr)
	assert.Check(t, is.Equal(r.code, 2), "%s", r)
	assert.Check(t, is.Contains(r.stderr, `--before "echo \"unbalanced" does not parse`), "%s", r)
	r = a.cli(t, alice, "commit", "--exclude", "/root/[x", ctr)
	assert.Check(t, is.Equal(r.code, 2), "%s", r)
	assert.Check(t, is.Contains(r.stderr, "--exclude"), "%s", r)

	// The site's commands, aborting on failure.
	strict := newAgent(t, withKey("before_freeze", `["sh -c 'exit 7'"]`), withKey("before_freeze_failure", `"abort"`)).start()
	task, r := commitJSON(t, strict, alice, ctr)
	assert.Check(t, is.Equal(task.State, api.StateFailed), "%s", r)
	assert.Check(t, is.Contains(task.Error, "exited with status 7, and this site aborts a freeze then"), task.Error)
	assert.Check(t, is.Len(listDir(t, filepath.Join(strict.save, alice)), 0))
}

// The user's exclusion file and --exclude add to the site's patterns; the
// sidecar records both; a bad line is an error naming the file and line.
func TestUserExclusions(t *testing.T) {
	a := newAgent(t, withKey("exclude", `["/site-tmp"]`)).start()
	ctr := session(t, alice, "mkdir -p /site-tmp /scratch /root/notes && echo SITE > /site-tmp/x && echo SCRATCH > /scratch/y && echo NOTES > /root/notes/z && echo KEEP > /root/keep")
	home := "/home/" + alice + "/.config/baicommit"
	r := runAs(t, alice, "sh", "-c", `mkdir -p "$0" && printf '# mine\n/scratch\n' > "$0/exclude"`, home)
	assert.Equal(t, r.code, 0, "%s", r)
	t.Cleanup(func() { os.Remove(home + "/exclude") })
	task, r := commitJSON(t, a, alice, "--exclude", "/root/notes", ctr)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	assert.Check(t, is.DeepEqual(task.Exclusions.Patterns, []string{"/site-tmp"}))
	assert.Check(t, is.DeepEqual(task.Exclusions.UserPatterns, []string{"/root/notes", "/scratch"}))
	b, err := os.ReadFile(task.Archive.Sidecar)
	assert.NilError(t, err)
	var sc api.Sidecar
	assert.NilError(t, json.Unmarshal(b, &sc))
	assert.Check(t, is.DeepEqual(sc.Exclusions.UserPatterns, []string{"/root/notes", "/scratch"}))
	img := loadArchive(t, alice, task.Archive.Path)
	out := podman(t, alice, "run", "--rm", "--network=none", img, "sh", "-c", "cat /site-tmp/x /scratch/y /root/notes/z /root/keep 2>/dev/null; true")
	assert.Check(t, is.Equal(strings.TrimSpace(out), "KEEP"), "only what no pattern excludes is in the image")

	r = runAs(t, alice, "sh", "-c", `printf '/ok\nrelative/bad\n' > "$0/exclude"`, home)
	assert.Equal(t, r.code, 0, "%s", r)
	task, r = commitJSON(t, a, alice, ctr)
	assert.Check(t, is.Equal(task.State, api.StateFailed), "%s", r)
	assert.Check(t, is.Contains(task.Error, "/.config/baicommit/exclude line 2: pattern \"relative/bad\""), task.Error)
}

// A before-freeze command that does not end is killed with its owner's
// rights alone: bob's Podman naming a process of root's as the command's
// gets that process nothing, and his freeze's hung attach is let go.
func TestHostilePodmanCannotAimTheKill(t *testing.T) {
	withRuntimeDir(t)
	victim := exec.Command("sleep", "300")
	assert.NilError(t, victim.Start())
	ended := make(chan struct{})
	go func() { victim.Wait(); close(ended) }()
	t.Cleanup(func() { victim.Process.Kill(); <-ended })
	a := newAgent(t, withKey("before_freeze_timeout", `"2s"`)).start()
	fakePodmanOf(t, bob, fakeSpec{ExecPID: victim.Process.Pid, Containers: []fakeContainer{{ID: fakeID(1), Name: "box", Image: baseImage}}})
	task, r := commitJSON(t, a, bob, "--before", "busybox sleep 1000", "box")
	assert.Assert(t, task.State == api.StateFailed || task.State == api.StateSucceeded, "%s", r)
	assert.Assert(t, is.Len(task.Before, 1), "%s", r)
	assert.Check(t, is.Contains(task.Before[0].Error, "did not end within 2s and was killed"))
	time.Sleep(200 * time.Millisecond) // a kill would have been reaped by now
	select {
	case <-ended:
		t.Errorf("root's process %d was killed on bob's Podman's word", victim.Process.Pid)
	default:
	}
	assert.Check(t, is.Contains(a.log.String(), "could not end a before-freeze command"))
	assert.Check(t, is.Contains(a.log.String(), "operation not permitted"))
}

// The layer store counts against the quota as what its blobs take, each
// once: usage shows it, and a freeze that would fit but for the store is
// refused.
func TestStoreCountsAgainstQuota(t *testing.T) {
	a := newAgent(t, withKey("quota", `{max_bytes = "6MiB"}`)).start()
	ctr := session(t, alice, "echo into-the-store > /root/s")
	task, r := commitJSON(t, a, alice, "--format", "store", ctr)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	u := usageOf(t, a, alice)
	store := filepath.Join(a.save, alice, "store")
	out, err := rootCmd("sh", "-c", `find "$0/blobs" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }'`, store)
	assert.NilError(t, err, out)
	blobs, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	assert.Check(t, is.Equal(u.Store, store))
	assert.Check(t, is.Equal(u.StoreBytes, blobs), "each blob once")
	assert.Check(t, is.Equal(u.StoreImages, 1))
	assert.Check(t, is.Equal(u.Bytes, blobs), "no archives but the store")
	assert.Check(t, is.Equal(u.Archives, 1))

	// 3 MiB of changes on the busybox base: about 5 MiB, which fits in
	// 6 MiB alone, not with the store's.
	big := session(t, alice, "busybox dd if=/dev/urandom of=/root/big bs=1M count=3 2>/dev/null")
	task, r = commitJSON(t, a, alice, big)
	assert.Check(t, is.Equal(task.State, api.StateFailed), "%s", r)
	assert.Check(t, is.Contains(task.Error, "and you keep "+units.Human(u.Bytes)+" in 1 archives"), task.Error)
	assert.Check(t, is.Len(listDir(t, filepath.Join(a.save, alice)), 1), "only the store")
}

// Retention applies to the layer store's images as to archives, each kind
// on its own: after each freeze the site's rule keeps the newest two
// images of the container and the one archive beside them; the user's
// own rule, through prune, keeps one, but not while the image is read;
// prune --store then frees the blobs only the removed images used, and
// the image kept still restores.
func TestStoreRetention(t *testing.T) {
	a := newAgent(t, withKey("retention", `{keep_per_container = 2}`)).start()
	st := storeOf(a, alice)
	ctr := session(t, alice, "echo v0 > /root/v")
	ta, r := commitJSON(t, a, alice, ctr)
	assert.Assert(t, is.Equal(ta.State, api.StateSucceeded), "%s", r)
	var imgs []string
	for i := 1; i <= 3; i++ {
		time.Sleep(1100 * time.Millisecond) // created times in whole seconds in names
		podman(t, alice, "exec", ctr, "sh", "-c", fmt.Sprintf("echo v%d > /root/v", i))
		task, r := commitJSON(t, a, alice, "--format", "store", ctr)
		assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
		imgs = append(imgs, task.Store.Path)
	}
	listed := func() []string {
		var list struct{ Archives []api.ArchiveEntry }
		r := cliJSON(t, a, alice, &list, "list", "--json")
		assert.Assert(t, is.Equal(r.code, 0), "%s", r)
		var paths []string
		for _, e := range list.Archives {
			paths = append(paths, e.Path)
		}
		return paths
	}
	assert.Check(t, is.DeepEqual(listed(), []string{imgs[2], imgs[1], ta.Archive.Path}), "the newest two images and the archive")
	_, err := os.Stat(imgs[0])
	assert.Check(t, os.IsNotExist(err), "the oldest image's layout is gone: %v", err)
	assert.Check(t, is.Contains(a.log.String(), imgs[0]), "the removal is logged")

	// The user's own rule: one per container, applied by prune.
	home := "/home/" + alice + "/.config/baicommit"
	r = runAs(t, alice, "sh", "-c", `mkdir -p "$0" && printf 'keep_per_container = 1\n' > "$0/retention.toml"`, home)
	assert.Equal(t, r.code, 0, "%s", r)
	t.Cleanup(func() { os.Remove(home + "/retention.toml") })
	// An image being read (a restore, a push, an export: here a shared
	// lock on its index held as they hold it) stays.
	held := pruneWhileRead(t, a, filepath.Join(imgs[1], "index.json"))
	r = a.cli(t, alice, "rm", imgs[1])
	assert.Check(t, r.code != 0 && strings.Contains(r.stderr, "is being read"), "rm too: %s", r)
	held.Close()
	r = a.cli(t, alice, "prune")
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	assert.Check(t, is.Contains(r.stdout, "removed "+imgs[1]), "%s", r)
	assert.Check(t, is.Contains(r.stdout, "baicommit prune --store"), "says where the blobs go: %s", r)
	assert.Check(t, is.DeepEqual(listed(), []string{imgs[2], ta.Archive.Path}), "the newest image and the only archive stay")

	// The blobs only the removed images used go with prune --store.
	var gc struct{ Store struct{ Removed int } }
	r = cliJSON(t, a, alice, &gc, "prune", "--store", "--grace", "0s", "--settle", "0s", "--json")
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	kept := imageLayers(t, imgs[2])
	assert.Check(t, is.Equal(gc.Store.Removed, 2*3), "each removed image's layer, config and manifest")
	assert.Check(t, is.Len(blobFiles(t, st), len(kept)+2), "the kept image's layers, config and manifest")
	name := "localhost/e2e/kept-" + randHex(3) + ":v1"
	r = a.cli(t, alice, "restore", "--name", name, imgs[2])
	assert.Assert(t, is.Equal(r.code, 0), "%s", r)
	t.Cleanup(func() { runAs(t, alice, "podman", "rmi", "-f", name) })
	assert.Check(t, is.Equal(podman(t, alice, "run", "--rm", "--network=none", name, "cat", "/root/v"), "v3"))
}

// pruneWhileRead holds the shared lock on path that a restore or a push
// holds while it reads, and checks that alice's prune then removes
// nothing and says why. The caller closes the file to let go.
func pruneWhileRead(t *testing.T, a *agentProc, path string) *os.File {
	t.Helper()
	held, err := os.Open(path)
	assert.NilError(t, err)
	t.Cleanup(func() { held.Close() })
	assert.NilError(t, syscall.Flock(int(held.Fd()), syscall.LOCK_SH))
	r := a.cli(t, alice, "prune")
	assert.Check(t, is.Equal(r.code, 0), "%s", r)
	assert.Check(t, is.Contains(r.stdout, "removed 0 archives"), "%s", r)
	assert.Check(t, is.Contains(r.stderr, "is being read"), "%s", r)
	return held
}
