package manager

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/httperr"
)

// The storage routes (usage, prune, remove) act on a user's archives on
// the shared filesystem: like the archive list, one agent that answers
// does it, through a helper running as the user, with the site's save
// path and quotas passed on.

// siteQuery is the query that passes the site's save path and quotas to
// an agent, with the user acted on (an admin's "user=").
func (m *Manager) siteQuery(user string) string {
	v := url.Values{}
	if m.cfg.SavePath != "" {
		v.Set(api.QuerySavePath, m.cfg.SavePath)
	}
	if m.cfg.StorePath != "" {
		v.Set(api.QueryStorePath, m.cfg.StorePath)
	}
	if q := m.siteQuotas(); q != nil {
		b, _ := json.Marshal(q)
		v.Set(api.QueryQuotas, string(b))
	}
	if user != "" {
		v.Set(api.QueryUser, user)
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// siteQuotas are the quotas of manager.toml, nil when it sets none (each
// agent's own apply then).
func (m *Manager) siteQuotas() *api.Quotas {
	q := m.cfg.Quota.API(m.cfg.MaxFreezeSize)
	if q.User == (api.Quota{}) && len(q.Groups) == 0 && q.MaxFreezeSize == 0 {
		return nil
	}
	return q
}

// onArchiveNode sends one request about owner's archives to the first
// agent that answers, acting for id.
func onArchiveNode[T any](ctx context.Context, m *Manager, id *Identity, owner, method, route string, body any) (T, error) {
	var zero T
	mine, err := m.slurm.UserNodes(ctx, owner)
	if err != nil {
		mine = nil // Slurm's advice is a preference, not a need
	}
	nodes, err := m.archiveNodes(ctx, mine)
	if err != nil {
		return zero, err
	}
	var raw []byte
	if body != nil {
		if raw, err = json.Marshal(body); err != nil {
			return zero, err
		}
	}
	v, _, err := firstAnswer(ctx, nodes, func(ctx context.Context, node string) (T, error) {
		return callJSON[T](ctx, m, node, method, route, raw, id.UID)
	})
	return v, err
}

func (m *Manager) handleUsage(w http.ResponseWriter, r *http.Request, id *Identity) {
	owner := r.URL.Query().Get(api.QueryUser)
	if err := mayActFor(id, owner); err != nil {
		m.writeError(w, err)
		return
	}
	if owner == "" {
		owner = id.Name()
	}
	u, err := onArchiveNode[api.Usage](r.Context(), m, id, owner, http.MethodGet, api.RouteUsage+m.siteQuery(r.URL.Query().Get(api.QueryUser)), nil)
	if err != nil {
		m.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (m *Manager) handlePrune(w http.ResponseWriter, r *http.Request, id *Identity) {
	var req api.PruneRequest
	if err := httperr.DecodeJSON(r.Body, maxRequestBody, &req); err != nil {
		m.writeError(w, err)
		return
	}
	res, err := onArchiveNode[api.PruneResult](r.Context(), m, id, id.Name(), http.MethodPost, api.RouteArchivesPrune+m.siteQuery(""), req)
	if err != nil {
		m.writeError(w, err)
		return
	}
	m.log.Info("archives pruned", "user", id.Name(), "removed", len(res.Removed), "dry_run", req.DryRun)
	writeJSON(w, http.StatusOK, res)
}

func (m *Manager) handleRemove(w http.ResponseWriter, r *http.Request, id *Identity) {
	var req api.RemoveRequest
	if err := httperr.DecodeJSON(r.Body, maxRequestBody, &req); err != nil {
		m.writeError(w, err)
		return
	}
	res, err := onArchiveNode[api.RemoveResult](r.Context(), m, id, id.Name(), http.MethodPost, api.RouteArchivesRemove+m.siteQuery(""), req)
	if err != nil {
		m.writeError(w, err)
		return
	}
	m.log.Info("archives removed", "user", id.Name(), "removed", len(res.Removed))
	writeJSON(w, http.StatusOK, res)
}
