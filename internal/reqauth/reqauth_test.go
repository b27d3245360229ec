package reqauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestWindow(t *testing.T) {
	type step struct {
		seq  uint64
		want bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{1, true}, {2, true}, {3, true}}},
		{"zero never", []step{{0, false}, {1, true}, {0, false}}},
		{"twice", []step{{1, true}, {1, false}, {2, true}, {1, false}, {2, false}}},
		{"out of order", []step{{5, true}, {3, true}, {4, true}, {1, true}, {2, true}, {3, false}, {6, true}}},
		{"within the window", []step{{10000, true}, {10000 - windowBits + 65, true}, {10000 - windowBits + 65, false}}},
		{"older than the window", []step{{10000, true}, {10000 - windowBits + 64, false}, {1, false}}},
		{"a long jump forgets nothing new", []step{{3, true}, {1 << 40, true}, {3, false}, {1<<40 - 1, true}, {1 << 40, false}}},
		{"sliding clears the old word", []step{{1, true}, {windowBits + 1, true}, {windowBits + 1 + 64, true}, {windowBits + 2, true}, {windowBits + 2, false}}},
		{"same word", []step{{64, true}, {65, true}, {127, true}, {66, true}, {65, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w window
			for i, s := range tc.steps {
				assert.Check(t, is.Equal(w.accept(s.seq), s.want), "step %d: %d", i, s.seq)
			}
		})
	}
}

// Every sequence number of a long shuffled run is accepted once.
func TestWindowShuffled(t *testing.T) {
	var w window
	const n = 100000
	seen := 0
	for base := uint64(1); base <= n; base += 1000 {
		// Within each block of 1000, in a scrambled order.
		for i := uint64(0); i < 1000; i++ {
			seq := base + (i*389)%1000
			if w.accept(seq) {
				seen++
			}
			assert.Assert(t, !w.accept(seq), "%d accepted twice", seq)
		}
	}
	assert.Check(t, is.Equal(seen, n))
}

// pair is an agent's server and a manager's client that opens sessions
// with it directly.
type pair struct {
	srv    *Server
	client *Client
	opens  atomic.Int32
}

func newPair(audience string, so ServerOptions, co ClientOptions) *pair {
	p := &pair{srv: NewServer(audience, so)}
	p.client = NewClient(func(_ context.Context, a string, hello []byte) ([]byte, error) {
		p.opens.Add(1)
		if a != audience {
			return nil, errors.New("wrong agent")
		}
		return p.srv.Accept(hello)
	}, co)
	return p
}

func signedRequest(t *testing.T, s *Session, method, target, body, as string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	s.Sign(r, []byte(body), as)
	return r
}

func TestSignVerify(t *testing.T) {
	p := newPair("cn01", ServerOptions{}, ClientOptions{})
	ctx := context.Background()
	s, err := p.client.Session(ctx, "cn01")
	assert.NilError(t, err)
	r := signedRequest(t, s, http.MethodPost, "/v1/freezes?x=1", `{"container":"box"}`, "1000")
	c, err := p.srv.Verify(r)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(c.As, "1000"))
	assert.Check(t, is.Equal(c.Session, s.ID()))
	assert.Check(t, c.CheckBody([]byte(`{"container":"box"}`)))
	assert.Check(t, is.ErrorIs(c.CheckBody([]byte(`{"container":"bob's"}`)), ErrBody))

	// The same session serves every later request: one opening.
	for range 10 {
		s2, err := p.client.Session(ctx, "cn01")
		assert.NilError(t, err)
		_, err = p.srv.Verify(signedRequest(t, s2, http.MethodGet, "/v1/tasks", "", "1000"))
		assert.NilError(t, err)
	}
	assert.Check(t, is.Equal(p.opens.Load(), int32(1)))
}

// A signed request changed in any part, sent twice, sent to another agent,
// too late, or not signed at all, is refused.
func TestVerifyRefuses(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clk := func() time.Time { return now }
	p := newPair("cn01", ServerOptions{Now: clk}, ClientOptions{Now: clk})
	s, err := p.client.Session(context.Background(), "cn01")
	assert.NilError(t, err)
	other := NewServer("cn02", ServerOptions{Now: clk})

	for _, tc := range []struct {
		name string
		edit func(r *http.Request) *http.Request
		srv  *Server
		err  error
	}{
		{name: "another method", edit: func(r *http.Request) *http.Request { r.Method = http.MethodDelete; return r }, err: ErrBadSignature},
		{name: "another path", edit: func(r *http.Request) *http.Request { r.URL.Path = "/v1/tasks/x.cn01"; return r }, err: ErrBadSignature},
		{name: "another query", edit: func(r *http.Request) *http.Request { r.URL.RawQuery = "user=bob"; return r }, err: ErrBadSignature},
		{name: "another user", edit: editHeader("a=1000", "a=1001"), err: ErrBadSignature},
		{name: "another body hash", edit: editHeader(",b=", ",b=0"), err: ErrMalformed},
		{name: "another sequence number", edit: editHeader("n=", "n=9"), err: ErrBadSignature},
		{name: "another time", edit: editHeader("t=", "t=1"), err: ErrStale},
		{name: "another agent", srv: other, err: ErrNoSession},
		{name: "no signature", edit: func(r *http.Request) *http.Request { r.Header.Del("Authorization"); return r }, err: ErrNoSignature},
		{name: "MUNGE instead", edit: func(r *http.Request) *http.Request { r.Header.Set("Authorization", "MUNGE MUNGE:x:"); return r }, err: ErrNoSignature},
		{name: "a field twice", edit: editHeader("s=", "a=1000,s="), err: ErrMalformed},
		{name: "a field missing", edit: func(r *http.Request) *http.Request {
			h := r.Header.Get("Authorization")
			r.Header.Set("Authorization", h[:strings.LastIndex(h, ",m=")])
			return r
		}, err: ErrMalformed},
		{name: "an unknown field", edit: editHeader("s=", "x=1,s="), err: ErrMalformed},
		{name: "a negative uid", edit: editHeader("a=1000", "a=-1"), err: ErrMalformed},
		{name: "a short session id", edit: editHeader("s=", "s=0"), err: ErrMalformed},
		{name: "an unknown session", edit: func(r *http.Request) *http.Request {
			return editHeader("s="+s.ID(), "s="+strings.Repeat("0", 32))(r)
		}, err: ErrNoSession},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := signedRequest(t, s, http.MethodPost, "/v1/freezes", `{"container":"box"}`, "1000")
			if tc.edit != nil {
				r = tc.edit(r)
			}
			srv := p.srv
			if tc.srv != nil {
				srv = tc.srv
			}
			_, err := srv.Verify(r)
			assert.Check(t, is.ErrorIs(err, tc.err))
		})
	}

	t.Run("replayed", func(t *testing.T) {
		r := signedRequest(t, s, http.MethodGet, "/v1/tasks", "", "1000")
		again := r.Clone(context.Background())
		_, err := p.srv.Verify(r)
		assert.NilError(t, err)
		_, err = p.srv.Verify(again)
		assert.Check(t, is.ErrorIs(err, ErrReplayed))
	})
	t.Run("a forged signature does not spend the sequence number", func(t *testing.T) {
		r := signedRequest(t, s, http.MethodGet, "/v1/tasks", "", "1000")
		forged := r.Clone(context.Background())
		forged.URL.Path = "/v1/sessions"
		_, err := p.srv.Verify(forged)
		assert.Check(t, is.ErrorIs(err, ErrBadSignature))
		_, err = p.srv.Verify(r)
		assert.NilError(t, err)
	})
	t.Run("the audience is in the signature", func(t *testing.T) {
		// Even an agent that held the same key refuses a request signed
		// for another node.
		r := signedRequest(t, s, http.MethodGet, "/v1/tasks", "", "1000")
		p.srv.mu.Lock()
		other.sessions[s.ID()] = &serverSession{key: p.srv.sessions[s.ID()].key, created: now, expires: now.Add(time.Hour)}
		p.srv.mu.Unlock()
		_, err := other.Verify(r)
		assert.Check(t, is.ErrorIs(err, ErrBadSignature))
	})
	t.Run("clocks a little apart", func(t *testing.T) {
		r := signedRequest(t, s, http.MethodGet, "/v1/tasks", "", "1000")
		now = now.Add(50 * time.Second)
		defer func() { now = now.Add(-50 * time.Second) }()
		_, err := p.srv.Verify(r)
		assert.NilError(t, err)
	})
	t.Run("too late", func(t *testing.T) {
		r := signedRequest(t, s, http.MethodGet, "/v1/tasks", "", "1000")
		now = now.Add(2 * time.Minute)
		defer func() { now = now.Add(-2 * time.Minute) }()
		_, err := p.srv.Verify(r)
		assert.Check(t, is.ErrorIs(err, ErrStale))
	})
}

func editHeader(old, new string) func(r *http.Request) *http.Request {
	return func(r *http.Request) *http.Request {
		r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), old, new, 1))
		return r
	}
}

// An agent that restarted knows no session: it challenges, the manager
// forgets the session, opens a new one and the request goes through.
func TestReopenAfterAgentRestart(t *testing.T) {
	p := newPair("cn01", ServerOptions{}, ClientOptions{})
	ctx := context.Background()
	s, err := p.client.Session(ctx, "cn01")
	assert.NilError(t, err)
	p.srv = NewServer("cn01", ServerOptions{}) // the restart

	_, err = p.srv.Verify(signedRequest(t, s, http.MethodGet, "/v1/tasks", "", "1000"))
	assert.Assert(t, is.ErrorIs(err, ErrNoSession))
	rec := httptest.NewRecorder()
	Challenge(rec.Header())
	rec.WriteHeader(http.StatusUnauthorized)
	assert.Check(t, Challenged(rec.Result()))
	p.client.Forget(s)

	s2, err := p.client.Session(ctx, "cn01")
	assert.NilError(t, err)
	assert.Check(t, s2.ID() != s.ID())
	_, err = p.srv.Verify(signedRequest(t, s2, http.MethodGet, "/v1/tasks", "", "1000"))
	assert.NilError(t, err)

	// Forgetting a session already replaced drops nothing.
	p.client.Forget(s)
	s3, err := p.client.Session(ctx, "cn01")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(s3.ID(), s2.ID()))
	assert.Check(t, is.Equal(p.opens.Load(), int32(2)))
}

func TestChallenged(t *testing.T) {
	for _, tc := range []struct {
		status int
		header string
		want   bool
	}{
		{http.StatusUnauthorized, `Baicommit-Session error="no_session"`, true},
		{http.StatusUnauthorized, `baicommit-session error="no_session"`, true},
		{http.StatusUnauthorized, "", false},
		{http.StatusUnauthorized, `MUNGE error="no_session"`, false},
		{http.StatusForbidden, `Baicommit-Session error="no_session"`, false},
	} {
		resp := &http.Response{StatusCode: tc.status, Header: http.Header{}}
		if tc.header != "" {
			resp.Header.Set("WWW-Authenticate", tc.header)
		}
		assert.Check(t, is.Equal(Challenged(resp), tc.want), "%d %q", tc.status, tc.header)
	}
}

// Many requests that need a session at once share one opening.
func TestOneOpeningForConcurrentRequests(t *testing.T) {
	srv := NewServer("cn01", ServerOptions{})
	var opens atomic.Int32
	release := make(chan struct{})
	c := NewClient(func(_ context.Context, _ string, hello []byte) ([]byte, error) {
		opens.Add(1)
		<-release
		return srv.Accept(hello)
	}, ClientOptions{})
	var wg sync.WaitGroup
	ids := make([]string, 50)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.Session(context.Background(), "cn01")
			if err == nil {
				ids[i] = s.ID()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	assert.Check(t, is.Equal(opens.Load(), int32(1)))
	for _, id := range ids {
		assert.Check(t, is.Equal(id, ids[0]))
	}
	assert.Check(t, is.Equal(srv.Sessions(), 1))
}

// A caller that gives up does not fail the opening for the others; a
// failed opening is tried again by the next request.
func TestOpeningOutlivesItsCallerAndFailuresAreRetried(t *testing.T) {
	srv := NewServer("cn01", ServerOptions{})
	var calls atomic.Int32
	release := make(chan struct{})
	c := NewClient(func(ctx context.Context, _ string, hello []byte) ([]byte, error) {
		switch calls.Add(1) {
		case 1:
			return nil, errors.New("connection refused")
		case 2:
			<-release
		}
		return srv.Accept(hello)
	}, ClientOptions{})
	_, err := c.Session(context.Background(), "cn01")
	assert.ErrorContains(t, err, "connection refused")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = c.Session(ctx, "cn01")
	assert.Check(t, is.ErrorIs(err, context.DeadlineExceeded))
	close(release)
	s, err := c.Session(context.Background(), "cn01")
	assert.NilError(t, err)
	_, err = srv.Verify(signedRequest(t, s, http.MethodGet, "/v1/version", "", "0"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(calls.Load(), int32(2)))
}

// A session is replaced shortly before it ends, and the agent forgets it
// when it ends.
func TestSessionLifetime(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clk := func() time.Time { return now }
	p := newPair("cn01", ServerOptions{Now: clk, TTL: time.Hour}, ClientOptions{Now: clk})
	ctx := context.Background()
	s, err := p.client.Session(ctx, "cn01")
	assert.NilError(t, err)

	now = now.Add(58 * time.Minute)
	again, err := p.client.Session(ctx, "cn01")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(again.ID(), s.ID()), "renewed too early")

	now = now.Add(90 * time.Second)
	renewed, err := p.client.Session(ctx, "cn01")
	assert.NilError(t, err)
	assert.Check(t, renewed.ID() != s.ID(), "not renewed in the last minute")
	// The old one still holds for requests in flight…
	_, err = p.srv.Verify(signedRequest(t, s, http.MethodGet, "/v1/tasks", "", "1000"))
	assert.NilError(t, err)
	// …until it ends.
	now = now.Add(time.Minute)
	_, err = p.srv.Verify(signedRequest(t, s, http.MethodGet, "/v1/tasks", "", "1000"))
	assert.Check(t, is.ErrorIs(err, ErrNoSession))
	_, err = p.srv.Verify(signedRequest(t, renewed, http.MethodGet, "/v1/tasks", "", "1000"))
	assert.NilError(t, err)
}

func TestServerKeepsAtMostMaxSessions(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	srv := NewServer("cn01", ServerOptions{MaxSessions: 3, Now: func() time.Time { return now }})
	var first *Session
	for i := range 5 {
		now = now.Add(time.Second)
		c := NewClient(func(_ context.Context, _ string, h []byte) ([]byte, error) { return srv.Accept(h) }, ClientOptions{})
		s, err := c.Session(context.Background(), "cn01")
		assert.NilError(t, err)
		if i == 0 {
			first = s
		}
	}
	assert.Check(t, is.Equal(srv.Sessions(), 3))
	_, err := srv.Verify(signedRequest(t, first, http.MethodGet, "/v1/tasks", "", "1"))
	assert.Check(t, is.ErrorIs(err, ErrNoSession), "the oldest should have gone")
}

func TestClientKeepsAtMostMaxSessions(t *testing.T) {
	c := NewClient(func(_ context.Context, a string, h []byte) ([]byte, error) {
		return NewServer(a, ServerOptions{}).Accept(h)
	}, ClientOptions{MaxSessions: 10})
	for i := range 25 {
		_, err := c.Session(context.Background(), "cn"+string(rune('a'+i)))
		assert.NilError(t, err)
	}
	assert.Check(t, c.Sessions() <= 10, "%d sessions", c.Sessions())
}

func TestAcceptRefusesBadHellos(t *testing.T) {
	srv := NewServer("cn01", ServerOptions{})
	zero, _ := json.Marshal(Hello{PublicKey: make([]byte, 32)})
	short, _ := json.Marshal(Hello{PublicKey: []byte{1, 2, 3}})
	for _, tc := range []struct {
		name, hello string
	}{
		{"not JSON", "hello"},
		{"empty", ""},
		{"no key", "{}"},
		{"short key", string(short)},
		{"low-order point", string(zero)},
		{"unknown field", `{"public_key":"AAAA","as":"0"}`},
		{"huge", `{"public_key":"` + strings.Repeat("A", 4096) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := srv.Accept([]byte(tc.hello))
			assert.Check(t, is.ErrorIs(err, ErrMalformed))
		})
	}
	assert.Check(t, is.Equal(srv.Sessions(), 0))
}

// A welcome that does not prove the key (someone answering in the agent's
// place) opens no session.
func TestWelcomeMustProveTheKey(t *testing.T) {
	srv := NewServer("cn01", ServerOptions{})
	c := NewClient(func(_ context.Context, _ string, h []byte) ([]byte, error) {
		b, err := srv.Accept(h)
		var w Welcome
		_ = json.Unmarshal(b, &w)
		w.Confirm[0] ^= 1
		b, _ = json.Marshal(w)
		return b, err
	}, ClientOptions{})
	_, err := c.Session(context.Background(), "cn01")
	assert.ErrorContains(t, err, "did not prove the session's key")
	// Nor does an agent of another node's name: the key depends on it.
	c = NewClient(func(_ context.Context, _ string, h []byte) ([]byte, error) {
		return NewServer("cn02", ServerOptions{}).Accept(h)
	}, ClientOptions{})
	_, err = c.Session(context.Background(), "cn01")
	assert.ErrorContains(t, err, "did not prove the session's key")
}
