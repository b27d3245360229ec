package agent

import (
	"context"
	"slices"
	"strings"

	"github.com/baicommit/baicommit/agent/taskstore"
	"github.com/baicommit/baicommit/api"
)

// Sessions lists the containers in the Podman of user (default: the
// caller), with the id of any freeze of them still running and the newest
// freeze of each, so that a caller polling the sessions learns how a
// freeze ended without knowing its task id.
func (a *Agent) Sessions(ctx context.Context, c Caller, user string) ([]api.Session, error) {
	u, err := a.owner(c, user)
	if err != nil {
		return nil, err
	}
	conn, err := a.connect(ctx, u)
	if err != nil {
		return nil, err
	}
	list, err := conn.List(ctx, "")
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Err: err, Msg: "list containers: " + err.Error()}
	}
	last, err := a.lastTasks(u.UID)
	if err != nil {
		return nil, err
	}
	out := make([]api.Session, 0, len(list))
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ctr := range list {
		s := api.Session{ID: ctr.ID, Image: ctr.Image, State: ctr.State, Created: ctr.Created.UTC(),
			Owner: u.Name, Node: a.cfg.NodeName, Job: ctr.Labels[api.LabelJob], Task: a.busy[busyKey{u.UID, ctr.ID}],
			LastTask: last[ctr.ID]}
		if len(ctr.Names) > 0 {
			s.Name = ctr.Names[0]
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y api.Session) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// lastTasks returns the newest task of each of uid's containers on this
// node, by container id: one pass over the store, then the running tasks,
// whose live records carry the progress the store lags behind on.
func (a *Agent) lastTasks(uid int) (map[string]*api.Task, error) {
	newest := map[string]*taskstore.Record{}
	_, err := a.store.ListUser(uid, func(r *taskstore.Record) bool {
		if r.OwnerUID == uid && r.Node == a.cfg.NodeName && r.ContainerID != "" {
			if cur, ok := newest[r.ContainerID]; !ok || newer(r, cur) {
				newest[r.ContainerID] = r
			}
		}
		// Nothing is kept: the map holds what is needed.
		return false
	})
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	for _, r := range a.live {
		if r.OwnerUID != uid || r.ContainerID == "" {
			continue
		}
		// A task started after the store was read is still the newest.
		if cur, ok := newest[r.ContainerID]; !ok || cur.ID == r.ID || newer(r, cur) {
			newest[r.ContainerID] = clone(r)
		}
	}
	a.mu.Unlock()
	out := make(map[string]*api.Task, len(newest))
	for id, r := range newest {
		out[id] = &r.Task
	}
	return out, nil
}

// newer orders tasks by creation, then id, so that two tasks created in
// the same instant still have one newest.
func newer(r, than *taskstore.Record) bool {
	if c := r.Created.Compare(than.Created); c != 0 {
		return c > 0
	}
	return r.ID > than.ID
}
