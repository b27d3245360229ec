package manager

import (
	"context"
	"errors"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/internal/httperr"
	"github.com/baicommit/baicommit/internal/slurm"
)

// userNodesSlurm knows the cluster's nodes and where the user's jobs run.
type userNodesSlurm struct {
	all, mine []string
	allErr    error
	mineErr   error
}

func (s userNodesSlurm) Job(context.Context, string) (*slurm.Job, error) { return nil, slurm.ErrNoJob }
func (s userNodesSlurm) UserNodes(context.Context, string) ([]string, error) {
	return s.mine, s.mineErr
}
func (s userNodesSlurm) RecentNodes(context.Context, string) ([]string, error) {
	return s.mine, s.mineErr
}
func (s userNodesSlurm) Nodes(context.Context) ([]string, error) { return s.all, s.allErr }

// The nodes asked for a user's archives: where their jobs run first, then
// the others, each once, only nodes the manager serves, at most
// maxArchiveTries.
func TestArchiveNodes(t *testing.T) {
	down := errors.New("slurmctld down")
	for _, tc := range []struct {
		name   string
		s      userNodesSlurm
		static []string
		want   []string
		status int
	}{
		{name: "no jobs", s: userNodesSlurm{all: []string{"cn1", "cn2", "cn3"}}, want: []string{"cn1", "cn2", "cn3"}},
		{name: "jobs first", s: userNodesSlurm{all: []string{"cn1", "cn2", "cn3"}, mine: []string{"cn3", "cn2"}}, want: []string{"cn3", "cn2", "cn1"}},
		{name: "each once", s: userNodesSlurm{all: []string{"cn1", "cn2"}, mine: []string{"cn2", "cn2"}}, want: []string{"cn2", "cn1"}},
		{name: "a job node the manager does not serve", s: userNodesSlurm{mine: []string{"login1", "cn2"}}, static: []string{"cn1", "cn2"}, want: []string{"cn2", "cn1"}},
		{name: "Slurm cannot say where the jobs run", s: userNodesSlurm{all: []string{"cn1", "cn2"}, mine: []string{"cn2"}, mineErr: down}, want: []string{"cn1", "cn2"}},
		{name: "Slurm knows only the jobs", s: userNodesSlurm{mine: []string{"cn2"}, allErr: down}, want: []string{"cn2"}},
		{name: "at most maxArchiveTries", s: userNodesSlurm{all: []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7"}, mine: []string{"n7"}}, want: []string{"n7", "n1", "n2", "n3", "n4"}},
		{name: "Slurm down", s: userNodesSlurm{allErr: down, mineErr: down}, status: 503},
		{name: "no nodes", s: userNodesSlurm{all: []string{}}, status: 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Nodes = tc.static
			m := newTestManager(cfg, tc.s)
			mine := tc.s.mine
			if tc.s.mineErr != nil {
				mine = nil
			}
			got, err := m.archiveNodes(context.Background(), mine)
			if tc.status != 0 {
				assert.Check(t, is.Equal(Status(err), tc.status), "%v", err)
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(got, tc.want))
		})
	}
}

// One answer is enough: the nodes are asked in order until one answers;
// when none does, the error names each node and why.
func TestFirstAnswer(t *testing.T) {
	unreachable := func(n string) error { return userErr(KindBadGateway, "cannot reach the agent of node %s: refused", n) }
	for _, tc := range []struct {
		name     string
		answers  map[string]error // nil: answers
		want     string           // the node that answered
		asked    []string
		status   int
		contains []string
	}{
		{name: "the first", answers: map[string]error{"cn1": nil, "cn2": nil}, want: "cn1", asked: []string{"cn1"}},
		{name: "past a dead one", answers: map[string]error{"cn1": unreachable("cn1"), "cn2": nil}, want: "cn2", asked: []string{"cn1", "cn2"}},
		{name: "past a refusal", answers: map[string]error{"cn1": httperr.FromStatus(400, "save_path outside the save_roots"), "cn2": nil}, want: "cn2", asked: []string{"cn1", "cn2"}},
		{
			name:    "none: 502 naming each",
			answers: map[string]error{"cn1": unreachable("cn1"), "cn2": httperr.FromStatus(403, "uid 1000 has no account")},
			asked:   []string{"cn1", "cn2"}, status: 502,
			contains: []string{"no agent could list your archives", "cannot reach the agent of node cn1", "node cn2: uid 1000 has no account"},
		},
		{
			name:    "all refuse alike: their refusal",
			answers: map[string]error{"cn1": httperr.FromStatus(403, "no account"), "cn2": httperr.FromStatus(403, "no account")},
			asked:   []string{"cn1", "cn2"}, status: 403, contains: []string{"node cn1: no account; node cn2: no account"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked []string
			v, node, err := firstAnswer(context.Background(), []string{"cn1", "cn2"}, func(_ context.Context, n string) (string, error) {
				asked = append(asked, n)
				if err := tc.answers[n]; err != nil {
					return "", err
				}
				return "list of " + n, nil
			})
			assert.Check(t, is.DeepEqual(asked, tc.asked))
			if tc.status != 0 {
				assert.Check(t, is.Equal(Status(err), tc.status), "%v", err)
				for _, c := range tc.contains {
					assert.Check(t, is.ErrorContains(err, c))
				}
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(node, tc.want))
			assert.Check(t, is.Equal(v, "list of "+tc.want))
		})
	}
}

func TestFirstAnswerStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	asked := 0
	_, _, err := firstAnswer(ctx, []string{"cn1", "cn2"}, func(context.Context, string) (int, error) {
		asked++
		cancel()
		return 0, errors.New("abandoned")
	})
	assert.Check(t, errors.Is(err, context.Canceled))
	assert.Check(t, is.Equal(asked, 1))
}
