package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
	"github.com/baicommit/baicommit/internal/archivetest"
	"github.com/baicommit/baicommit/internal/munge"
)

// managerClientAs is a Go client of the manager whose requests carry
// MUNGE credentials of who (made by munge run as who), as the CLI's would.
func managerClientAs(t *testing.T, m *managerProc, who string) (*client.Client, munge.Codec) {
	t.Helper()
	wrapper := filepath.Join(t.TempDir(), "munge-as-"+who)
	assert.NilError(t, os.WriteFile(wrapper, []byte("#!/bin/sh\nexec runuser -u "+who+" -- /usr/bin/munge \"$@\"\n"), 0o755))
	codec := munge.Codec{Munge: wrapper}
	c, err := client.New(m.url, client.WithManager(), client.WithSigner(func(ctx context.Context, req *http.Request, body []byte) error {
		return codec.Sign(ctx, req, body, munge.AudienceManager, munge.EncodeOptions{TTL: time.Minute})
	}))
	assert.NilError(t, err)
	return c, codec
}

// plantFile writes content to path as who's file (mode 0644), creating
// its directory for who.
func plantFile(t *testing.T, who, path string, content []byte) {
	t.Helper()
	uid := int(uidOf(t, who))
	dir := filepath.Dir(path)
	assert.NilError(t, os.MkdirAll(dir, 0o755))
	assert.NilError(t, os.Chown(dir, uid, uid))
	assert.NilError(t, os.WriteFile(path, content, 0o644))
	assert.NilError(t, os.Chown(path, uid, uid))
}

// plantLink makes a symbolic link at link to target, owned by who.
func plantLink(t *testing.T, who, target, link string) {
	t.Helper()
	r := runAs(t, who, "ln", "-s", target, link)
	assert.Equal(t, r.code, 0, "%s", r)
}

// A user's archives, listed through the manager, which cannot read them:
// one agent reads the sidecars as the user below the site's save path.
// Alice sees exactly her freeze, with its digest and size; bob sees none
// of hers; her session shows the freeze as its last task; a sidecar link
// she planted to another user's file is not followed.
func TestArchivesThroughTheManager(t *testing.T) {
	n1 := slurmNode(t)
	c := newCluster(t, []string{n1, "bcn2"}, 1, nil)
	m := c.managers[0]
	ctx := context.Background()
	// The site's save location, open to all as installing says (else the
	// first user to freeze creates it, and it is theirs).
	siteDir := filepath.Join(c.save, "site", alice)
	assert.NilError(t, os.Mkdir(filepath.Dir(siteDir), 0o777))
	assert.NilError(t, os.Chmod(filepath.Dir(siteDir), os.ModeSticky|0o777))
	ctr := session(t, alice, "echo listed > /root/listed.txt")

	r := m.cli(t, alice, "commit", "--node", "bcn2", "--wait", "--json", ctr)
	assert.Equal(t, r.code, 0, "%s", r)
	task := decodeTask(t, r)
	assert.Equal(t, task.State, api.StateSucceeded, "%+v", task)
	assert.Check(t, is.Equal(filepath.Dir(task.Archive.Path), siteDir))

	ac, codec := managerClientAs(t, m, alice)
	var took []time.Duration
	var list *api.ArchiveList
	for range 5 {
		t0 := time.Now()
		l, err := ac.Archives(ctx)
		took = append(took, time.Since(t0))
		assert.NilError(t, err)
		list = l
	}
	var signing time.Duration
	for range 5 {
		req, _ := http.NewRequest(http.MethodGet, m.url+api.RouteArchives, nil)
		t0 := time.Now()
		assert.NilError(t, codec.Sign(ctx, req, nil, munge.AudienceManager, munge.EncodeOptions{}))
		signing += time.Since(t0)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("GET %s through the manager: median %.1f ms, min %.1f ms, max %.1f ms (5 requests, each with a credential made by munge run as %s: %.1f ms of it on average)",
		api.RouteArchives, ms(took[2]), ms(took[0]), ms(took[4]), alice, ms(signing/5))

	assert.Check(t, is.Equal(list.Dir, siteDir))
	assert.Assert(t, is.Len(list.Archives, 1), "%+v", list)
	e := list.Archives[0]
	sum := fileSHA256(t, task.Archive.Path)
	st, err := os.Stat(task.Archive.Path)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(e.Path, task.Archive.Path))
	assert.Check(t, is.Equal(e.SidecarFile, task.Archive.Sidecar))
	assert.Check(t, is.Equal(e.SHA256, task.Archive.SHA256))
	assert.Check(t, is.Equal(e.SHA256, sum), "the listed digest is not the file's")
	assert.Check(t, is.Equal(e.Size, st.Size()))
	assert.Check(t, is.Equal(e.Size, task.Archive.Size))
	assert.Check(t, is.Equal(e.Task, task.ID))
	assert.Check(t, is.Equal(e.Node, "bcn2"))
	assert.Check(t, is.Equal(e.UID, int(uidOf(t, alice))))
	assert.Check(t, is.Len(list.Warnings, 0))

	// bob has frozen nothing: his save directory does not even exist.
	bc, _ := managerClientAs(t, m, bob)
	bl, err := bc.Archives(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(bl.Dir, filepath.Join(c.save, "site", bob)))
	assert.Check(t, is.Len(bl.Archives, 0), "%+v", bl)

	// The session shows how its last freeze ended, without its task id,
	// on the node that froze it only.
	ss, err := ac.SessionsOf(ctx, client.SessionQuery{Node: "bcn2"})
	assert.NilError(t, err)
	s := findSession(t, ss, ctr)
	assert.Assert(t, s.LastTask != nil, "%+v", s)
	assert.Check(t, is.Equal(s.Task, ""), "no freeze runs")
	assert.Check(t, is.Equal(s.LastTask.ID, task.ID))
	assert.Check(t, is.Equal(s.LastTask.State, api.StateSucceeded))
	assert.Assert(t, s.LastTask.Archive != nil)
	assert.Check(t, is.Equal(s.LastTask.Archive.Path, task.Archive.Path))
	assert.Check(t, is.Equal(s.LastTask.Archive.SHA256, task.Archive.SHA256))
	assert.Check(t, is.Equal(s.LastTask.Archive.Size, task.Archive.Size))
	ss, err = ac.SessionsOf(ctx, client.SessionQuery{Node: n1})
	assert.NilError(t, err)
	assert.Check(t, findSession(t, ss, ctr).LastTask == nil, "node %s never froze it", n1)

	// A link planted among her sidecars, to a file of bob's that claims
	// her archive, is not followed: the list stays what it was.
	sc, err := os.ReadFile(task.Archive.Sidecar)
	assert.NilError(t, err)
	bobs := filepath.Join(c.save, "bob-owned", "claims-alices.json")
	plantFile(t, bob, bobs, sc)
	plantLink(t, alice, bobs, filepath.Join(siteDir, "planted.json"))
	list, err = ac.Archives(ctx)
	assert.NilError(t, err)
	assert.Assert(t, is.Len(list.Archives, 1), "%+v", list)
	assert.Check(t, is.Equal(list.Archives[0].SidecarFile, task.Archive.Sidecar))
}

func findSession(t *testing.T, ss []api.Session, name string) api.Session {
	t.Helper()
	for _, s := range ss {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no session %s in %+v", name, ss)
	return api.Session{}
}

// curlAgent sends GET target to the agent's unix socket as who and returns
// the status and body.
func curlAgent(t *testing.T, a *agentProc, who, target string) (int, string) {
	t.Helper()
	r := runAs(t, who, "curl", "-sS", "--unix-socket", a.sock, "-w", "\n%{http_code}", "http://agent"+target)
	assert.Equal(t, r.code, 0, "%s", r)
	out := strings.TrimSpace(r.stdout)
	i := strings.LastIndex(out, "\n")
	status, err := strconv.Atoi(out[i+1:])
	assert.NilError(t, err, "%s", r)
	return status, out[:max(i, 0)]
}

// writeSidecarFor writes an archive and a sidecar describing it into dir,
// as who's files.
func writeSidecarFor(t *testing.T, who, dir, name string) api.ArchiveEntry {
	t.Helper()
	content := []byte("archive " + name)
	path := filepath.Join(dir, name+api.ArchiveSuffix)
	plantFile(t, who, path, content)
	sc := archivetest.Sidecar(name, content, api.Sidecar{User: who, UID: int(uidOf(t, who)), Node: node, Created: time.Now().UTC().Truncate(time.Second)})
	b, err := json.Marshal(sc)
	assert.NilError(t, err)
	scPath := api.SidecarName(path)
	plantFile(t, who, scPath, b)
	return api.ArchiveEntry{Path: path, SidecarFile: scPath, Sidecar: sc}
}

// On the agent's socket: a user lists the archives below the agent's own
// save path for them, never another user's, never through a planted link;
// root, who has none, and a user naming a save path, are refused.
func TestArchivesOnTheAgentSocket(t *testing.T) {
	a := newAgent(t).start()
	mine := writeSidecarFor(t, alice, filepath.Join(a.save, alice, "2025-03-01"), "box")
	bobs := writeSidecarFor(t, bob, filepath.Join(a.save, bob), "bobs")
	// bob's readable file claiming alice's archive, linked among hers.
	claim, err := os.ReadFile(mine.SidecarFile)
	assert.NilError(t, err)
	plantFile(t, bob, filepath.Join(a.save, bob, "claim.json"), claim)
	plantLink(t, alice, filepath.Join(a.save, bob, "claim.json"), filepath.Join(a.save, alice, "2025-03-01", "planted.json"))

	status, body := curlAgent(t, a, alice, api.RouteArchives)
	assert.Equal(t, status, http.StatusOK, body)
	var list api.ArchiveList
	assert.NilError(t, json.Unmarshal([]byte(body), &list), body)
	assert.Check(t, is.Equal(list.Dir, filepath.Join(a.save, alice)))
	assert.Check(t, is.DeepEqual(list.Archives, []api.ArchiveEntry{mine}))

	status, body = curlAgent(t, a, bob, api.RouteArchives)
	assert.Equal(t, status, http.StatusOK, body)
	assert.NilError(t, json.Unmarshal([]byte(body), &list), body)
	assert.Check(t, is.DeepEqual(list.Archives, []api.ArchiveEntry{bobs}), "bob lists only his own: %s", body)

	// The save path is the site's to set, not a user's.
	status, body = curlAgent(t, a, alice, api.RouteArchives+"?save_path="+filepath.Join(a.save, bob))
	assert.Check(t, is.Equal(status, http.StatusForbidden), body)
	assert.Check(t, is.Contains(body, "set by the site"))

	_, err = a.client(t).Archives(context.Background())
	var apiErr *client.APIError
	assert.Assert(t, errors.As(err, &apiErr), "%v", err)
	assert.Check(t, is.Equal(apiErr.Status, http.StatusBadRequest))
	assert.Check(t, is.ErrorContains(err, "root has no archives"))
}
