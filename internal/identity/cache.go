package identity

import (
	"errors"
	"sync"
	"time"
)

// Defaults of a Cache.
const (
	DefaultCacheTTL   = 30 * time.Second
	DefaultCacheUsers = 10000
)

// Cache is Accounts that remembers each answer for a while. Every request
// a daemon serves names a uid, and asking NSS (files, LDAP, sssd) for the
// account and its groups each time costs more than the rest of a status
// request (measured: a fifth of the agent's time under load). A change to
// an account or to a group (who is an admin) takes effect within the TTL,
// as with nscd or sssd, which cache for longer. A user that does not exist
// is remembered too, so that lookups of made-up names do not reach LDAP
// each time; other failures are not.
type Cache struct {
	next Accounts
	ttl  time.Duration
	max  int
	now  func() time.Time

	mu sync.Mutex
	m  map[string]cachedUser
}

type cachedUser struct {
	u   *User
	err error
	at  time.Time
}

// NewCache caches next's answers for ttl, at most max of them (zero
// values: the defaults). Users it returns are shared: read them only.
func NewCache(next Accounts, ttl time.Duration, max int) *Cache {
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	if max <= 0 {
		max = DefaultCacheUsers
	}
	return &Cache{next: next, ttl: ttl, max: max, now: time.Now, m: map[string]cachedUser{}}
}

// Lookup is next's Lookup, remembered.
func (c *Cache) Lookup(nameOrUID string) (*User, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[nameOrUID]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.ttl {
		return e.u, e.err
	}
	u, err := c.next.Lookup(nameOrUID)
	if err != nil && !errors.Is(err, ErrUnknownUser) {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if now.Sub(e.at) >= c.ttl {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			c.m = map[string]cachedUser{}
		}
	}
	c.m[nameOrUID] = cachedUser{u: u, err: err, at: now}
	return u, err
}
