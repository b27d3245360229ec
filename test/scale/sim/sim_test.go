package sim

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/slurm"
)

func testUsers() []User {
	var us []User
	for i := range 10 {
		us = append(us, User{Name: "u" + string(rune('a'+i)), UID: 5000 + i, GID: 5000 + i})
	}
	return us
}

func TestPlan(t *testing.T) {
	p, err := NewPlan(t.TempDir(), Shape{Nodes: 100, Users: testUsers(), Unanswering: true, UnansweringJobNode: true}, "mgr", "/m.sock")
	assert.NilError(t, err)
	assert.Check(t, is.Len(p.Nodes, 100))
	names := map[string]bool{}
	addrs := map[string]bool{}
	for _, n := range p.Nodes {
		assert.Check(t, !names[n.Name] && !addrs[n.Addr], "%s %s twice", n.Name, n.Addr)
		names[n.Name], addrs[n.Addr] = true, true
	}
	users := map[string][]string{} // node → users with sessions there
	for _, s := range p.Sessions {
		assert.Check(t, names[s.Node], "a session on unknown node %s", s.Node)
		if !slices.Contains(users[s.Node], s.User) {
			users[s.Node] = append(users[s.Node], s.User)
		}
	}
	shared := 0
	for _, us := range users {
		if len(us) > 1 {
			shared++
		}
	}
	assert.Check(t, shared > 0, "no node is shared by two users: isolation would go untested")
	for _, u := range p.Users {
		assert.Check(t, is.Len(p.RunningNodes(u.Name), 3))
		for _, s := range p.FreezeTargets(u.Name) {
			assert.Check(t, p.Answers(s.Node))
		}
	}
	assert.Check(t, !p.Answers(p.Hung[0]) && slices.Contains(p.RunningNodes(p.Users[0].Name), p.Hung[0]))
	_, err = NewPlan(t.TempDir(), Shape{Nodes: 10, Users: testUsers()}, "mgr", "")
	assert.ErrorContains(t, err, "at least 64 nodes")
}

// The stand-ins answer what package slurm asks, as Slurm would.
func TestSlurmStandIns(t *testing.T) {
	p, err := NewPlan(t.TempDir(), Shape{Nodes: 64, Users: testUsers()}, "mgr", "")
	assert.NilError(t, err)
	bin, err := WriteSlurm(p, t.TempDir())
	assert.NilError(t, err)
	c := slurm.Commands{BinDir: bin}
	ctx := context.Background()
	u := p.Users[2]

	nodes, err := c.Nodes(ctx)
	assert.NilError(t, err)
	assert.Check(t, is.Len(nodes, 64))
	running, err := c.UserNodes(ctx, u.Name)
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(running, p.RunningNodes(u.Name)))
	recent, err := c.RecentNodes(ctx, u.Name)
	assert.NilError(t, err)
	want := append(p.RunningNodes(u.Name), NodeName(16+2))
	slices.Sort(want)
	assert.Check(t, is.DeepEqual(recent, want), "running and ended jobs, not pending ones")
	job, err := c.Job(ctx, runningJob(2))
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(job, &slurm.Job{ID: runningJob(2), User: u.Name, State: "RUNNING", Nodes: p.RunningNodes(u.Name)}))
	_, err = c.Job(ctx, "99999")
	assert.Check(t, is.ErrorIs(err, slurm.ErrNoJob))
	none, err := c.UserNodes(ctx, "nobody-here")
	assert.NilError(t, err)
	assert.Check(t, is.Len(none, 0))

	calls, err := SlurmCalls(filepath.Dir(bin))
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(calls, map[string]int64{"squeue": 5, "sinfo": 1, "scontrol": 3}))
}

// The simulated helper writes an archive and its sidecar as the real one
// names them, and lists them with the real helper's code.
func TestHelpers(t *testing.T) {
	root := t.TempDir()
	me, err := identity.LookupUID(os.Getuid())
	assert.NilError(t, err)
	dir := filepath.Join(root, me.Name, "2026")
	ctx := context.Background()
	var events []messages.Event
	emit := func(e messages.Event) { events = append(events, e) }
	created := time.Now().UTC().Truncate(time.Second)
	err = helpers{}.Run(ctx, me, messages.Spec{Op: messages.OpArchiveImage, Root: root, Dir: dir, Name: "box.tar.gz",
		SidecarName: api.SidecarName("box.tar.gz"),
		Sidecar:     api.Sidecar{Node: "sim00003", Task: "abc.sim00003", User: me.Name, UID: me.UID, Created: created}}, emit)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(events[len(events)-1].Event, messages.EventDone))

	events = nil
	err = helpers{}.Run(ctx, me, messages.Spec{Op: messages.OpList, Root: root, Dir: filepath.Join(root, me.Name)}, emit)
	assert.NilError(t, err)
	var found []*api.ArchiveEntry
	for _, e := range events {
		if e.Event == messages.EventArchive {
			found = append(found, e.Archive)
		}
	}
	assert.Assert(t, is.Len(found, 1))
	assert.Check(t, is.Equal(found[0].Node, "sim00003"))
	assert.Check(t, is.Equal(found[0].Task, "abc.sim00003"))
	assert.Check(t, is.Equal(found[0].Path, filepath.Join(dir, "box.tar.gz")))
}
