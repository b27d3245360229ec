package manager

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/httperr"
)

// maxArchiveTries is how many agents one archive list asks at most before
// it gives up: each dead one costs up to agent_timeout.
const maxArchiveTries = 5

// handleArchives lists the caller's archives. The manager runs as an
// account that may not read users' files, so an agent lists them, as the
// user; the shared filesystem looks the same from every node, so one agent
// that answers is enough.
func (m *Manager) handleArchives(w http.ResponseWriter, r *http.Request, id *Identity) {
	mine, err := m.slurm.UserNodes(r.Context(), id.Name())
	if err != nil {
		// Slurm's advice is a preference, not a need.
		mine = nil
	}
	nodes, err := m.archiveNodes(r.Context(), mine)
	if err != nil {
		m.writeError(w, err)
		return
	}
	list, node, err := firstAnswer(r.Context(), nodes, func(ctx context.Context, node string) (api.ArchiveList, error) {
		return getJSON[api.ArchiveList](ctx, m, node, m.archivesTarget(), id.UID)
	})
	if err != nil {
		m.writeError(w, err)
		return
	}
	if list.Archives == nil {
		list.Archives = []api.ArchiveEntry{}
	}
	m.log.Debug("archives listed", "user", id.Name(), "node", node, "archives", len(list.Archives))
	writeJSON(w, http.StatusOK, list)
}

// archivesTarget is the agent route that lists the caller's archives,
// below the site's save path.
func (m *Manager) archivesTarget() string {
	q := url.Values{}
	if m.cfg.SavePath != "" {
		q.Set(api.QuerySavePath, m.cfg.SavePath)
	}
	if m.cfg.StorePath != "" {
		q.Set(api.QueryStorePath, m.cfg.StorePath)
	}
	if len(q) == 0 {
		return api.RouteArchives
	}
	return api.RouteArchives + "?" + q.Encode()
}

// archiveNodes are the nodes to ask for a user's archives, in order: mine,
// those of the user's jobs, first (their agents are up and have seen the
// user), then the others; at most maxArchiveTries.
func (m *Manager) archiveNodes(ctx context.Context, mine []string) ([]string, error) {
	all, allErr := m.nodes(ctx)
	if allErr != nil && len(mine) == 0 {
		return nil, allErr
	}
	order := make([]string, 0, maxArchiveTries)
	for _, n := range mine {
		// Only nodes the manager serves (all is nil if unknown).
		if len(order) < maxArchiveTries && (allErr != nil || all.contains(n)) && !slices.Contains(order, n) {
			order = append(order, n)
		}
	}
	if allErr == nil {
		for _, n := range all.list {
			if len(order) >= maxArchiveTries {
				break
			}
			if !slices.Contains(order, n) {
				order = append(order, n)
			}
		}
	}
	if len(order) == 0 {
		return nil, userErr(KindBadGateway, "no node with an agent to list archives through")
	}
	return order, nil
}

// firstAnswer asks the nodes one after the other and returns the first
// answer and the node that gave it. If none answers, the error names
// every node tried and why it failed: 502, or the agents' own status when
// they all refused alike (a user they all refuse gets that refusal).
func firstAnswer[T any](ctx context.Context, nodes []string, ask func(context.Context, string) (T, error)) (T, string, error) {
	var zero T
	var tried []string
	status := 0
	for _, n := range nodes {
		v, err := ask(ctx, n)
		if err == nil {
			return v, n, nil
		}
		if ctx.Err() != nil {
			return zero, "", fmt.Errorf("listing archives abandoned: %w", ctx.Err())
		}
		msg := err.Error()
		if !strings.Contains(msg, n) {
			msg = "node " + n + ": " + msg
		}
		tried = append(tried, msg)
		s := httperr.Status(err)
		switch {
		case s < 400 || s >= 500:
			status = -1 // the agent did not answer: no common refusal
		case status == 0:
			status = s
		case status != s:
			status = -1
		}
	}
	msg := "no agent could list your archives: " + strings.Join(tried, "; ")
	if status > 0 {
		return zero, "", httperr.FromStatus(status, msg)
	}
	return zero, "", userErr(KindBadGateway, "%s", msg)
}
