package manager

import (
	"context"
	"sync"
	"time"
)

// pageNodesFresh is how long the web page's sessions refresh reuses where
// a user's jobs run. An open page refreshes every few seconds, and a
// squeue for every refresh of every open page would load slurmctld, the
// busiest daemon of a cluster; a job started meanwhile shows within this.
const pageNodesFresh = 15 * time.Second

// maxCachedUsers bounds the cache; past it, it starts over.
const maxCachedUsers = 4096

// userNodesCache remembers, per user, the nodes of their running jobs.
type userNodesCache struct {
	mu sync.Mutex
	m  map[string]cachedNodes
}

type cachedNodes struct {
	nodes []string
	at    time.Time
}

// pageUserNodes is Slurm's UserNodes for the web page's refreshes, at most
// pageNodesFresh old. The CLI asks Slurm every time: it asks once, right
// after the user started a job.
func (m *Manager) pageUserNodes(ctx context.Context, user string) ([]string, error) {
	c := &m.pageNodes
	c.mu.Lock()
	e, ok := c.m[user]
	c.mu.Unlock()
	if ok && time.Since(e.at) < pageNodesFresh {
		return e.nodes, nil
	}
	ns, err := m.slurm.UserNodes(ctx, user)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedUsers {
		c.m = map[string]cachedNodes{}
	}
	c.m[user] = cachedNodes{nodes: ns, at: time.Now()}
	return ns, nil
}
