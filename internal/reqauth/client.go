package reqauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Opener sends hello to the agent of audience (a node name), with the
// manager's MUNGE credential bound to it, and returns the agent's answer
// body (a Welcome in JSON). Its errors are returned as they are to every
// request that waited for the session.
type Opener func(ctx context.Context, audience string, hello []byte) ([]byte, error)

// ClientOptions tune a Client; zero values mean the defaults.
type ClientOptions struct {
	// OpenTimeout bounds opening one session (10 s).
	OpenTimeout time.Duration
	// MaxSessions bounds the sessions kept (DefaultClientSessions). Past
	// it, one that is not in use is dropped, and opened again when needed.
	MaxSessions int
	// Now is the clock (time.Now).
	Now func() time.Time
}

// DefaultClientSessions is how many agents' sessions a manager keeps by
// default: a few hundred bytes each.
const DefaultClientSessions = 20000

// Client is the manager's side: one session per agent, opened when first
// needed and again when it is about to end or the agent no longer knows it.
type Client struct {
	open    Opener
	timeout time.Duration
	max     int
	now     func() time.Time

	mu      sync.Mutex
	entries map[string]*entry // by audience
}

// entry is a session being opened (done open) or opened.
type entry struct {
	done chan struct{}
	s    *Session
	err  error
}

// NewClient returns a client that opens sessions with open.
func NewClient(open Opener, o ClientOptions) *Client {
	c := &Client{open: open, timeout: o.OpenTimeout, max: o.MaxSessions, now: clock(o.Now), entries: map[string]*entry{}}
	if c.timeout <= 0 {
		c.timeout = 10 * time.Second
	}
	if c.max <= 0 {
		c.max = DefaultClientSessions
	}
	return c
}

// Session returns a session with the agent of audience that has some
// time left, opening one if need be. Concurrent callers share one opening;
// it runs on its own deadline (OpenTimeout), so that one caller giving up
// does not fail the others.
func (c *Client) Session(ctx context.Context, audience string) (*Session, error) {
	c.mu.Lock()
	e := c.entries[audience]
	if e != nil {
		select {
		case <-e.done:
			if e.err != nil || !e.s.fresh(c.now()) {
				e = nil // failed or ending: open anew
			}
		default: // being opened: wait for it
		}
	}
	if e == nil {
		e = &entry{done: make(chan struct{})}
		c.makeRoom()
		c.entries[audience] = e
		go c.fill(audience, e)
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		if e.err != nil {
			return nil, e.err
		}
		return e.s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fill opens the session of e.
func (c *Client) fill(audience string, e *entry) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	e.s, e.err = c.openSession(ctx, audience)
	if e.err != nil {
		c.mu.Lock()
		if c.entries[audience] == e {
			// The next request tries again.
			delete(c.entries, audience)
		}
		c.mu.Unlock()
	}
	close(e.done)
}

func (c *Client) openSession(ctx context.Context, audience string) (*Session, error) {
	priv, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	pub := priv.PublicKey().Bytes()
	hello, err := json.Marshal(Hello{PublicKey: pub})
	if err != nil {
		return nil, err
	}
	sent := c.now()
	answer, err := c.open(ctx, audience, hello)
	if err != nil {
		return nil, err
	}
	var w Welcome
	if err := json.Unmarshal(answer, &w); err != nil {
		return nil, fmt.Errorf("the agent of %s answered the session's opening with something else: %w", audience, err)
	}
	if len(w.Session) != 32 || !isHex(w.Session) || w.TTLSeconds <= 0 {
		return nil, fmt.Errorf("the agent of %s answered the session's opening with %w", audience, ErrMalformed)
	}
	peer, err := curve.NewPublicKey(w.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("the agent of %s sent a bad public key: %w", audience, err)
	}
	secret, err := priv.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("the agent of %s sent a bad public key: %w", audience, err)
	}
	key, err := sessionKey(secret, audience, w.Session, pub, w.PublicKey)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(w.Confirm, confirmation(key, w.Session)) {
		// Someone between us answered in the agent's place.
		return nil, fmt.Errorf("the agent of %s did not prove the session's key: something other than the agent answered", audience)
	}
	ttl := time.Duration(w.TTLSeconds) * time.Second
	return &Session{audience: audience, id: w.Session, key: key, now: c.now,
		// Counted from before the Hello left: the agent's own clock
		// started later.
		expires: sent.Add(ttl), margin: min(ttl/10, time.Minute)}, nil
}

// makeRoom drops sessions that are not being opened while there are too
// many. Callers hold c.mu.
func (c *Client) makeRoom() {
	for a, e := range c.entries {
		if len(c.entries) < c.max {
			return
		}
		select {
		case <-e.done:
			delete(c.entries, a)
		default:
		}
	}
}

// Forget drops s after its agent refused it (Challenged), unless another
// session already took its place.
func (c *Client) Forget(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[s.audience]; e != nil {
		select {
		case <-e.done:
			if e.s == s {
				delete(c.entries, s.audience)
			}
		default:
		}
	}
}

// Sessions is the number of sessions kept or being opened.
func (c *Client) Sessions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Session is one session with one agent.
type Session struct {
	audience, id string
	key          []byte
	expires      time.Time
	// margin before expires at which a new session is opened, so that
	// requests signed with this one still arrive in time.
	margin time.Duration
	now    func() time.Time
	seq    atomic.Uint64
}

func (s *Session) fresh(now time.Time) bool { return now.Before(s.expires.Add(-s.margin)) }

// ID names the session (it is not secret).
func (s *Session) ID() string { return s.id }

// Sign sets req's Authorization header: req acts for uid as, and body is
// exactly what it sends. Each call takes the next sequence number, so a
// request that is sent again must be signed again.
func (s *Session) Sign(req *http.Request, body []byte, as string) {
	sg := signed{session: s.id, seq: s.seq.Add(1), unix: s.now().Unix(), as: as, body: bodySum(body)}
	sg.mac = sg.compute(s.key, s.audience, req.Method, req.URL.RequestURI())
	req.Header.Set("Authorization", sg.header())
}
