package agent

import (
	"context"
	"slices"
	"strings"

	"github.com/baicommit/baicommit/api"
	"github.com/containers/podman/v5/pkg/bindings/containers"
)

// Sessions lists the containers in the Podman of user (default: the
// caller), with the id of any freeze of them still running.
func (a *Agent) Sessions(ctx context.Context, c Caller, user string) ([]api.Session, error) {
	u, err := a.owner(c, user)
	if err != nil {
		return nil, err
	}
	conn, err := a.connect(ctx, u)
	if err != nil {
		return nil, err
	}
	list, err := containers.List(conn, new(containers.ListOptions).WithAll(true))
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Err: err, Msg: "list containers: " + err.Error()}
	}
	out := make([]api.Session, 0, len(list))
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ctr := range list {
		s := api.Session{ID: ctr.ID, Image: ctr.Image, State: ctr.State, Created: ctr.Created.UTC(),
			Owner: u.Name, Node: a.cfg.NodeName, Job: ctr.Labels[api.LabelJob], Task: a.busy[ctr.ID]}
		if len(ctr.Names) > 0 {
			s.Name = ctr.Names[0]
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y api.Session) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}
