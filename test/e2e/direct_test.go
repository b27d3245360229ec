package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
)

// listImage describes every file of an image as the user's Podman
// mounts it: path, type, mode, owner, size, mtime (seconds), link target,
// link count of regular files, content digest and xattrs (file
// capabilities included), one line each, sorted.
const listImage = `set -e
m=$(podman image mount "$1")
cd "$m"
find . -mindepth 1 \( -type f -printf '%p %y %m %U:%G %s %T@ %n\n' \) -o \( ! -type f -printf '%p %y %m %U:%G - %T@ %l\n' \) |
    awk '{ sub(/\.[0-9]*$/, "", $6); print }' | sort > /tmp/list.$$
find . -type f -exec sha256sum {} + | awk '{ print $2 " sha256 " $1 }' | sort >> /tmp/list.$$
getfattr -R -h -d -m - . 2>/dev/null | awk '/^# file: / { f = $3; next } NF { print "./" f " xattr " $0 }' | sort >> /tmp/list.$$
cd /
podman image umount "$1" >/dev/null
sort /tmp/list.$$
rm -f /tmp/list.$$
`

// imageFiles lists image for store s.
func imageFiles(t *testing.T, s store, image string) []string {
	t.Helper()
	r := s.run(t, "unshare", "sh", "-c", listImage, "sh", image)
	assert.Equal(t, r.code, 0, "%s: list %s: %s", s.name, image, r)
	return strings.Split(strings.TrimSpace(r.stdout), "\n")
}

// imageConfig is the config of image as Podman shows it.
type imageConfig struct {
	Config struct {
		Entrypoint   []string
		Cmd          []string
		Env          []string
		WorkingDir   string
		User         string
		Labels       map[string]string
		ExposedPorts map[string]struct{}
		Volumes      map[string]struct{}
		StopSignal   string
	}
	RootFS struct{ Layers []string }
}

func inspectImage(t *testing.T, s store, image string) imageConfig {
	t.Helper()
	out := s.must(t, "image", "inspect", image)
	var cs []imageConfig
	assert.NilError(t, json.Unmarshal([]byte(out), &cs), out)
	assert.Assert(t, is.Len(cs, 1))
	return cs[0]
}

// sessionChanges changes a session's files in every way a layer records:
// new files with modes (setuid too), directories, a symbolic link, a hard
// link pair, a FIFO, an mtime from the past, files of another owner, a
// deleted base file, a replaced base directory (opaque), empty files and
// directories the user made, and some MiB of random data.
const sessionChanges = `set -e
echo 'new file' > /root/new.txt
chmod 640 /root/new.txt
mkdir -p /opt/tree/a/b
echo deep > /opt/tree/a/b/c.txt
chmod 700 /opt/tree/a
echo '#!/bin/sh' > /opt/tree/run.sh
chmod 4755 /opt/tree/run.sh
ln -s /root/new.txt /opt/link
echo linked > /opt/hard1
ln /opt/hard1 /opt/hard2
mkfifo /opt/fifo
rm /bin/ls
echo old > /opt/old-mtime
touch -d '2001-02-03 04:05:06' /opt/old-mtime
mkdir /opt/owned
echo o > /opt/owned/f
chown -R 1000:1000 /opt/owned
busybox dd if=/dev/urandom of=/opt/big bs=1M count=6 2>/dev/null
rm -rf /srv/old
mkdir /srv/old
echo replaced > /srv/old/new
: > /opt/empty-by-user
mkdir /opt/empty-dir
cp /bin/busybox /opt/capped
`

// baseWithTree commits a two-layer base image for s whose /srv/old holds
// files, so that a session can replace that directory.
func baseWithTree(t *testing.T, s store) string {
	t.Helper()
	name := "localhost/e2e-base2-" + randHex(3) + ":latest"
	ctr := s.session(t, baseImage, "mkdir -p /srv/old && echo a > /srv/old/a && echo b > /srv/old/b")
	s.must(t, "stop", "-t", "0", ctr)
	s.must(t, "commit", "-q", ctr, name)
	t.Cleanup(func() { s.run(t, "rmi", "-f", name) })
	return name
}

// setXattrs gives the container's /root/new.txt a user xattr and
// /opt/capped a file capability, from outside (busybox has no tools for
// either), through the user's own mount of the container.
func setXattrs(t *testing.T, s store, ctr string) {
	t.Helper()
	r := s.run(t, "unshare", "sh", "-ec", `m=$(podman mount "$1")
setfattr -n user.note -v hello "$m/root/new.txt"
/usr/sbin/setcap cap_net_raw+ep "$m/opt/capped"
podman umount "$1" >/dev/null`, "sh", ctr)
	assert.Equal(t, r.code, 0, "%s: set xattrs: %s", s.name, r)
}

// The direct freeze makes the image `podman commit` makes, file by file
// and in its config, on Podman 4.3.1 and 5.8.2 with vfs and native
// overlay, but for the runtime's mount placeholders, which the sidecar
// lists; `podman load -i` takes the .tar.gz on every one of them.
func TestDirectFreezeMatchesPodmanCommit(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			base := baseWithTree(t, s)
			a := s.agent(t)
			ctr := s.session(t, base, sessionChanges, "-e", "API_TOKEN=hunter2", "-e", "KEEP_ME=yes",
				"--label", "team=ml", "-w", "/srv", "--expose", "8080")
			setXattrs(t, s, ctr)

			task, r := commitJSON(t, a, s.user, "--tag", "localhost/frozen/"+s.name+":v1", ctr)
			assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
			assert.Check(t, is.Equal(task.Method, api.MethodDirect), "warnings: %v", task.Warnings)
			assert.Check(t, is.Equal(task.Progress.BytesTotal, task.Progress.BytesRead), "the total was exact")
			oracle := "localhost/e2e-oracle-" + randHex(3) + ":latest"
			s.must(t, "commit", "-q", ctr, oracle)
			t.Cleanup(func() { s.run(t, "rmi", "-f", oracle) })

			frozen := s.load(t, task.Archive.Path)
			assert.Check(t, is.Equal(frozen, "localhost/frozen/"+s.name+":v1"))
			b, err := os.ReadFile(task.Archive.Sidecar)
			assert.NilError(t, err)
			var sc api.Sidecar
			assert.NilError(t, json.Unmarshal(b, &sc))
			assert.Assert(t, sc.Exclusions != nil)
			assert.Check(t, is.DeepEqual(sc.Exclusions, task.Exclusions))
			// The base was made by podman commit, so its /etc/hosts and
			// /etc/hostname are the base image's own: not placeholders.
			assert.Check(t, !slices.Contains(sc.Exclusions.Placeholders, "/etc/hosts"), "%v", sc.Exclusions.Placeholders)

			got, want := imageFiles(t, s, frozen), imageFiles(t, s, oracle)
			leftOut := func(line string) bool {
				p := strings.TrimPrefix(strings.Fields(line)[0], ".")
				return slices.ContainsFunc(sc.Exclusions.Placeholders, func(l string) bool { return p == l || strings.HasPrefix(p, l+"/") })
			}
			var wantKept []string
			for _, l := range want {
				if !leftOut(l) {
					wantKept = append(wantKept, l)
				}
			}
			assert.Check(t, is.DeepEqual(got, wantKept), "the frozen image's files differ from podman commit's (but for the placeholders)")
			// What was left out is what the runtime made: empty.
			for _, l := range want {
				if leftOut(l) {
					f := strings.Fields(l)
					assert.Check(t, f[1] == "d" || (f[1] == "f" && f[4] == "0") || f[2] == "sha256", "a placeholder left out is not empty: %s", l)
				}
			}
			for _, must := range []string{"./root/new.txt f 640", "./opt/fifo p ", "./opt/link l 777", "./opt/tree/run.sh f 4755", "./opt/owned/f f 644 1000:1000",
				"./opt/old-mtime f 644 0:0 4 981173106 ", "./root/new.txt xattr user.note=\"hello\"", "./opt/capped xattr security.capability=", "./srv/old/new f"} {
				assert.Check(t, slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, must) }), "%s missing from the frozen image", must)
			}
			assert.Check(t, !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "./bin/ls ") || strings.HasPrefix(l, "./srv/old/a ") }),
				"deleted files are gone")

			fc, oc := inspectImage(t, s, frozen), inspectImage(t, s, oracle)
			assert.Check(t, is.DeepEqual(fc.Config.Cmd, oc.Config.Cmd))
			assert.Check(t, is.DeepEqual(fc.Config.Entrypoint, oc.Config.Entrypoint))
			assert.Check(t, is.Equal(fc.Config.WorkingDir, oc.Config.WorkingDir))
			assert.Check(t, is.Equal(fc.Config.User, oc.Config.User))
			assert.Check(t, is.DeepEqual(fc.Config.ExposedPorts, oc.Config.ExposedPorts))
			assert.Check(t, is.DeepEqual(fc.Config.Volumes, oc.Config.Volumes))
			assert.Check(t, is.Equal(fc.Config.StopSignal, oc.Config.StopSignal))
			var oracleEnv []string
			for _, e := range oc.Config.Env {
				if !strings.HasPrefix(e, "API_TOKEN=") {
					oracleEnv = append(oracleEnv, e)
				}
			}
			assert.Check(t, is.DeepEqual(fc.Config.Env, oracleEnv), "the environment is podman commit's, scrubbed")
			assert.Check(t, is.Contains(strings.Join(task.Warnings, "\n"), "API_TOKEN"))
			for k, v := range oc.Config.Labels {
				assert.Check(t, is.Equal(fc.Config.Labels[k], v), "label %s", k)
			}
			assert.Check(t, is.Equal(fc.Config.Labels["io.baicommit.task"], task.ID))
			assert.Check(t, is.Equal(fc.Config.Labels["io.baicommit.source.container"], ctr))
			assert.Check(t, is.Len(fc.RootFS.Layers, len(oc.RootFS.Layers)))
			// Podman 4.3's load -i took the gzip'd archive: no gunzip needed.
			out := s.must(t, "run", "--rm", "--network=none", frozen, "cat", "/root/new.txt", "/srv/old/new")
			assert.Check(t, is.Equal(out, "new file\nreplaced"))
		})
	}
}

// What the runtime only made to mount over stays out of a freeze: a host
// file bind-mounted where the image has nothing (the parent directories
// made for it too), and a driver library a CDI device mounts the way
// NVIDIA's spec does; the sidecar lists them. `podman commit` bakes them
// in as 0-byte files, which break the image on the next driver.
func TestDirectFreezeLeavesOutMountPlaceholders(t *testing.T) {
	hostDir, err := os.MkdirTemp("", "baicommit-e2e-host-")
	assert.NilError(t, err)
	t.Cleanup(func() { os.RemoveAll(hostDir) })
	assert.NilError(t, os.Chmod(hostDir, 0o755))
	lib := hostDir + "/libhost.so.1"
	assert.NilError(t, os.WriteFile(lib, []byte("host library bytes"), 0o644))
	cdiLib := hostDir + "/libcdi.so.1"
	assert.NilError(t, os.WriteFile(cdiLib, []byte("driver library bytes"), 0o644))
	assert.NilError(t, os.MkdirAll("/etc/cdi", 0o755))
	spec := `cdiVersion: "0.5.0"
kind: "baicommit.example/gpu"
devices:
- name: "e2e"
  containerEdits:
    mounts:
    - hostPath: "` + cdiLib + `"
      containerPath: "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
      options: ["ro", "nosuid", "nodev", "bind"]
`
	assert.NilError(t, os.WriteFile("/etc/cdi/baicommit-e2e.yaml", []byte(spec), 0o644))
	t.Cleanup(func() { os.Remove("/etc/cdi/baicommit-e2e.yaml") })

	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) {
			a := s.agent(t)
			ctr := s.session(t, baseImage, "echo mine > /root/kept.txt",
				"-v", lib+":/opt/vendor/lib/libhost.so.1:ro", "--device", "baicommit.example/gpu=e2e")
			// The mounts are there in the session.
			assert.Check(t, is.Equal(s.must(t, "exec", ctr, "cat", "/opt/vendor/lib/libhost.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
				"host library bytesdriver library bytes"))
			task, r := commitJSON(t, a, s.user, ctr)
			assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
			for _, p := range []string{"/opt/vendor/lib/libhost.so.1", "/opt/vendor/lib", "/opt/vendor", "/opt",
				"/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib/x86_64-linux-gnu", "/usr/lib", "/usr"} {
				assert.Check(t, slices.Contains(task.Exclusions.Placeholders, p), "%s left out: %v", p, task.Exclusions.Placeholders)
			}
			frozen := s.load(t, task.Archive.Path)
			files := imageFiles(t, s, frozen)
			for _, l := range files {
				assert.Check(t, !strings.HasPrefix(l, "./usr") && !strings.HasPrefix(l, "./opt"), "placeholder in the freeze: %s", l)
			}
			assert.Check(t, slices.ContainsFunc(files, func(l string) bool { return strings.HasPrefix(l, "./root/kept.txt f") }))
			// podman commit, for comparison, bakes the empty library in.
			oracle := "localhost/e2e-oracle-" + randHex(3) + ":latest"
			s.must(t, "commit", "-q", ctr, oracle)
			t.Cleanup(func() { s.run(t, "rmi", "-f", oracle) })
			oracleFiles := imageFiles(t, s, oracle)
			assert.Check(t, slices.ContainsFunc(oracleFiles, func(l string) bool {
				return strings.HasPrefix(l, "./usr/lib/x86_64-linux-gnu/libcuda.so.1 f ") && strings.Fields(l)[4] == "0"
			}), "podman commit makes the 0-byte library this test is about: %q", oracleFiles)
			// A new session from the freeze mounts the driver again.
			out := s.must(t, "run", "--rm", "--network=none", "--device", "baicommit.example/gpu=e2e", frozen, "cat", "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/root/kept.txt")
			assert.Check(t, is.Equal(out, "driver library bytesmine"))
		})
	}
}

// The site's exclude patterns leave paths out with everything below them;
// the task and the sidecar count what they removed.
func TestDirectFreezeExcludes(t *testing.T) {
	a := newAgent(t, withKey("exclude", `["/root/.cache", "/opt/*.log"]`)).start()
	ctr := session(t, alice, `mkdir -p /root/.cache/pip && busybox dd if=/dev/zero of=/root/.cache/pip/wheel bs=1k count=100 2>/dev/null &&
echo keep > /root/keep && mkdir /opt && echo log > /opt/run.log && echo data > /opt/data`)
	task, r := commitJSON(t, a, alice, ctr)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	x := task.Exclusions
	assert.Assert(t, x != nil)
	assert.Check(t, is.DeepEqual(x.Patterns, []string{"/root/.cache", "/opt/*.log"}))
	assert.Check(t, is.Equal(x.Entries, 4), "/root/.cache, its pip/ and wheel, /opt/run.log: %+v", x)
	assert.Check(t, is.Equal(x.Bytes, int64(100<<10+4)))
	b, err := os.ReadFile(task.Archive.Sidecar)
	assert.NilError(t, err)
	var sc api.Sidecar
	assert.NilError(t, json.Unmarshal(b, &sc))
	assert.Check(t, is.DeepEqual(sc.Exclusions, x))
	img := loadArchive(t, alice, task.Archive.Path)
	out := podman(t, alice, "run", "--rm", "--network=none", img, "sh", "-c", "cat /root/keep /opt/data; ls -a /root /opt")
	assert.Check(t, is.Contains(out, "keep\ndata"))
	assert.Check(t, !strings.Contains(out, ".cache") && !strings.Contains(out, "run.log"), out)

	// A bad pattern stops the agent from starting, naming the key.
	bad := newAgent(t, withKey("exclude", `["relative/path"]`))
	r = runBin(t, nil, bins.agent, "--config", bad.cfgPath, "--listen", "unix://"+bad.sock)
	assert.Check(t, is.Equal(r.code, 1), "%s", r)
	assert.Check(t, is.Contains(r.stderr, `exclude pattern "relative/path": give an absolute container path`))
}

// changeInSession runs script as the store's user inside their own mount
// of the container's files ($m), as a process of theirs could while a
// freeze runs (even while the container is paused).
func changeInSession(t *testing.T, s store, ctr, script string) {
	t.Helper()
	r := s.run(t, "unshare", "sh", "-ec", `m=$(podman mount "$1")
`+script+`
podman umount "$1" >/dev/null`, "sh", ctr)
	assert.Equal(t, r.code, 0, "%s: change the session: %s", s.name, r)
}

// Files that change while the freeze reads them are cut or zero-padded to
// the size they had when listed, GNU tar style, and each is named in the
// task's warnings; the archive is whole and loads.
func TestDirectFreezeFilesChangingWhileRead(t *testing.T) {
	for _, s := range stores(t)[:2] {
		t.Run(s.name, func(t *testing.T) {
			a := s.agent(t, withKey("compression_level", "9"))
			// /opt/big comes first and takes a while; the files under /zz
			// are read after it.
			ctr := s.session(t, baseImage, `mkdir -p /opt /zz && busybox dd if=/dev/urandom of=/opt/big bs=1M count=200 2>/dev/null &&
echo 1234567890 > /zz/grow && busybox seq 1 10000 > /zz/shrink && echo bye > /zz/gone`)
			task := a.freezeUntil(t, s.user, ctr, api.PhaseExporting)
			changeInSession(t, s, ctr, `busybox seq 1 100000 >> "$m/zz/grow"; : > "$m/zz/shrink"; rm "$m/zz/gone"`)
			done := a.waitTask(t, task.ID)
			assert.Assert(t, is.Equal(done.State, api.StateSucceeded), done.Error)
			w := strings.Join(done.Warnings, "\n")
			if !strings.Contains(w, "/zz/grow grew while it was read") {
				t.Fatalf("the freeze had read the files before they changed (the test's timing is off): %q", done.Warnings)
			}
			assert.Check(t, is.Contains(w, "/zz/shrink shrank while it was read (0 of 48894 bytes): the rest is zeros"))
			assert.Check(t, is.Contains(w, "/zz/gone vanished before it could be read"))
			img := s.load(t, done.Archive.Path)
			out := s.must(t, "run", "--rm", "--network=none", img, "sh", "-c", "cat /zz/grow; wc -c < /zz/shrink; wc -c < /zz/gone; busybox tr -d '\\0' < /zz/shrink | wc -c")
			assert.Check(t, is.Equal(out, "1234567890\n48894\n4\n0"), "grow cut at 11 bytes; shrink and gone padded with zeros")
		})
	}
}

// A container removed while its freeze reads it fails the freeze cleanly:
// nothing is left under the save directory.
func TestDirectFreezeContainerRemoved(t *testing.T) {
	for _, s := range stores(t)[:2] {
		t.Run(s.name, func(t *testing.T) {
			a := s.agent(t, withKey("compression_level", "9"))
			ctr := s.session(t, baseImage, "busybox dd if=/dev/urandom of=/data bs=1M count=300 2>/dev/null")
			task := a.freezeUntil(t, s.user, ctr, api.PhaseExporting)
			s.must(t, "rm", "-f", "-t", "0", ctr)
			done := a.waitTask(t, task.ID)
			assert.Check(t, is.Equal(done.State, api.StateFailed))
			assert.Check(t, is.Contains(done.Error, "was removed while it was being frozen; nothing was written"), done.Error)
			assert.Check(t, is.Len(listDir(t, filepath.Join(a.save, s.user)), 0))
		})
	}
}

// A base layer whose files on disk no longer match the digest the store
// recorded is refused, naming the layer; nothing is written.
func TestDirectFreezeDamagedBaseLayer(t *testing.T) {
	for _, s := range stores(t)[:2] {
		t.Run(s.name, func(t *testing.T) {
			base := baseWithTree(t, s)
			a := s.agent(t)
			ctr := s.session(t, base, "echo mine > /root/mine")
			// The base's top layer holds /srv/old/a: change it on disk.
			graph := s.must(t, "info", "--format", "{{.Store.GraphRoot}}")
			top := layerOf(t, graph, s.driver, s.must(t, "image", "inspect", "--format", "{{range .RootFS.Layers}}{{.}} {{end}}", base))
			dir := graph + "/vfs/dir/" + top
			if s.driver == "overlay" {
				dir = graph + "/overlay/" + top + "/diff"
			}
			r := s.run(t, "unshare", "sh", "-ec", `echo tampered > "$1/srv/old/a"`, "sh", dir)
			assert.Equal(t, r.code, 0, "%s", r)
			done, r := commitJSON(t, a, s.user, ctr)
			assert.Check(t, is.Equal(done.State, api.StateFailed), "%s", r)
			assert.Check(t, is.Contains(done.Error, "layer 2 of the image ("+top[:12]+")"), done.Error)
			assert.Check(t, is.Contains(done.Error, "the image store is damaged"), done.Error)
			assert.Check(t, is.Len(listDir(t, filepath.Join(a.save, s.user)), 0))
		})
	}
}

// layerOf is the id of the store's layer whose diff is the last of the
// digests listed, from the store's layers.json.
func layerOf(t *testing.T, graph, driver, digests string) string {
	t.Helper()
	ds := strings.Fields(digests)
	b, err := os.ReadFile(graph + "/" + driver + "-layers/layers.json")
	assert.NilError(t, err)
	var layers []struct {
		ID   string `json:"id"`
		Diff string `json:"diff-digest"`
	}
	assert.NilError(t, json.Unmarshal(b, &layers))
	for _, l := range layers {
		if l.Diff == ds[len(ds)-1] {
			return l.ID
		}
	}
	t.Fatalf("no layer with diff %s in %s", ds[len(ds)-1], graph)
	return ""
}

// The user's own Podman answers while a large freeze runs: the freeze
// holds no lock of the store while it streams.
func TestDirectFreezePodmanKeepsWorking(t *testing.T) {
	for _, s := range stores(t)[:2] {
		t.Run(s.name, func(t *testing.T) {
			a := s.agent(t, withKey("compression_level", "9"))
			ctr := s.session(t, baseImage, "busybox dd if=/dev/urandom of=/data bs=1M count=400 2>/dev/null")
			task := a.freezeUntil(t, s.user, ctr, api.PhaseExporting)
			ps := s.run(t, "ps", "--format", "{{.Names}}")
			assert.Check(t, is.Equal(ps.code, 0), "%s", ps)
			assert.Check(t, is.Contains(ps.stdout, ctr))
			run := s.run(t, "run", "--rm", "--network=none", baseImage, "echo", "still here")
			assert.Check(t, is.Equal(run.code, 0), "%s", run)
			assert.Check(t, is.Equal(strings.TrimSpace(run.stdout), "still here"))
			cur, err := a.client(t).Task(context.Background(), task.ID)
			assert.NilError(t, err)
			if cur.Done() {
				t.Fatalf("the freeze ended before podman was asked (the test's timing is off): %s", cur.State)
			}
			assert.Check(t, is.Equal(a.waitTask(t, task.ID).State, api.StateSucceeded))
		})
	}
}

// keep_image leaves the frozen image in the owner's Podman, loaded from
// the published archive.
func TestDirectFreezeKeepImage(t *testing.T) {
	a := newAgent(t, withKey("keep_image", "true")).start()
	ctr := session(t, alice, "echo kept > /root/kept")
	task, r := commitJSON(t, a, alice, "--tag", "localhost/alice/kept:v1", ctr)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	assert.Check(t, !strings.Contains(strings.Join(task.Warnings, "\n"), "keep_image"), "%v", task.Warnings)
	t.Cleanup(func() { runAs(t, alice, "podman", "rmi", "-f", "localhost/alice/kept:v1") })
	out := podman(t, alice, "run", "--rm", "--network=none", "localhost/alice/kept:v1", "cat", "/root/kept")
	assert.Check(t, is.Equal(out, "kept"))
}

// A setup the direct freeze cannot read (here: a base image in an
// additional, read-only image store) falls back to podman commit, saying
// why; the archive is as good.
func TestDirectFreezeFallsBackToCommit(t *testing.T) {
	ais, err := os.MkdirTemp("/var/tmp", "baicommit-e2e-ais-")
	assert.NilError(t, err)
	t.Cleanup(func() { os.RemoveAll(ais) })
	uid := int(uidOf(t, bob))
	assert.NilError(t, os.Chown(ais, uid, uid))
	assert.NilError(t, os.Chmod(ais, 0o755))
	r := runAs(t, bob, "sh", "-ec", `d=$(mktemp -d) && mkdir -p "$d/r/bin" && cp /bin/busybox "$d/r/bin/" && ln -s busybox "$d/r/bin/sh" && ln -s busybox "$d/r/bin/sleep" && ln -s busybox "$d/r/bin/cat" &&
echo ais > "$d/r/from-ais" && tar -C "$d/r" --owner=0 --group=0 -cf "$d/r.tar" . &&
podman --root "$1" --storage-driver vfs import -q "$d/r.tar" localhost/e2e-ais-base:latest >/dev/null && rm -rf "$d"`, "sh", ais)
	assert.Equal(t, r.code, 0, "%s", r)
	conf := "/home/" + bob + "/.config/containers/storage.conf"
	_, err = os.Stat(conf)
	assert.Assert(t, os.IsNotExist(err), "%s exists: this test would replace it", conf)
	assert.NilError(t, os.MkdirAll(filepath.Dir(conf), 0o755))
	assert.NilError(t, os.WriteFile(conf, []byte("[storage]\ndriver = \"vfs\"\nrunroot = \"/tmp/podman-run-"+strconv.Itoa(uid)+
		"/containers\"\ngraphroot = \"/home/"+bob+"/.local/share/containers/storage\"\n[storage.options]\nadditionalimagestores = [\""+ais+"\"]\n"), 0o644))
	t.Cleanup(func() { os.Remove(conf) })
	for _, d := range []string{filepath.Dir(conf), filepath.Dir(filepath.Dir(conf))} {
		assert.NilError(t, os.Chown(d, uid, uid))
	}

	a := newAgent(t).start()
	name := "e2e-ais-" + randHex(3)
	podman(t, bob, "run", "-d", "--network=none", "--name", name, "localhost/e2e-ais-base:latest", "sleep", "3600")
	t.Cleanup(func() { runAs(t, bob, "podman", "rm", "-f", "-t", "0", name) })
	podman(t, bob, "exec", name, "sh", "-c", "echo mine > /mine")
	task, r := commitJSON(t, a, bob, name)
	assert.Assert(t, is.Equal(task.State, api.StateSucceeded), "%s", r)
	assert.Check(t, is.Equal(task.Method, api.MethodCommit))
	assert.Check(t, is.Contains(strings.Join(task.Warnings, "\n"), "an additional image store?"), "%v", task.Warnings)
	assert.Check(t, is.Contains(strings.Join(task.Warnings, "\n"), "so it was frozen through podman commit instead"), "%v", task.Warnings)
	img := loadArchive(t, bob, task.Archive.Path)
	assert.Check(t, is.Equal(podman(t, bob, "run", "--rm", "--network=none", img, "cat", "/mine", "/from-ais"), "mine\nais"))
}
