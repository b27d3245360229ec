package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/reqauth"
)

// recorded is a request seen on its way from the manager to an agent.
type recorded struct {
	method, uri string
	header      http.Header
	body        []byte
}

// wiretap stands between the manager and one agent, as someone on the
// network would, and keeps a copy of every request. With steal set, it
// keeps the next session opening to itself instead of passing it on.
type wiretap struct {
	target string
	mu     sync.Mutex
	seen   []recorded
	steal  bool
	stolen *recorded
}

func (wt *wiretap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := recorded{method: r.Method, uri: r.URL.RequestURI(), header: r.Header.Clone(), body: body}
	wt.mu.Lock()
	wt.seen = append(wt.seen, rec)
	if wt.steal && r.URL.Path == reqauth.Route {
		wt.steal, wt.stolen = false, &rec
		wt.mu.Unlock()
		http.Error(w, "lost on the way", http.StatusBadGateway)
		return
	}
	wt.mu.Unlock()
	resp, err := rec.send(wt.target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// last is the newest request recorded for a path.
func (wt *wiretap) last(path string) *recorded {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	for i := len(wt.seen) - 1; i >= 0; i-- {
		if u, _ := url.Parse(wt.seen[i].uri); u.Path == path {
			return &wt.seen[i]
		}
	}
	return nil
}

// send sends the recorded request, as it was, to an agent.
func (rec recorded) send(base string) (*http.Response, error) {
	req, err := http.NewRequest(rec.method, base+rec.uri, bytes.NewReader(rec.body))
	if err != nil {
		return nil, err
	}
	req.Header = rec.header.Clone()
	return http.DefaultTransport.RoundTrip(req)
}

// replay sends the recorded request to an agent and returns the status
// and the error message (or the body).
func (rec recorded) replay(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := rec.send(base)
	assert.NilError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e api.Error
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return resp.StatusCode, e.Message
	}
	return resp.StatusCode, string(b)
}

// Requests taken off the wire between the manager and one agent are good
// for nothing: not at another agent (neither the session opening, whose
// MUNGE credential names its node, nor a signed request, whose session
// and audience are the first agent's), not twice at the same one, not
// with a part changed.
func TestCapturedRequestsRefused(t *testing.T) {
	c := newCluster(t, []string{"bcn1", "bcn2"}, 0, nil)
	tap := &wiretap{target: c.urls["bcn1"], steal: true}
	srv := httptest.NewServer(tap)
	defer srv.Close()
	m := startManager(t, map[string]string{"bcn1": srv.URL, "bcn2": c.urls["bcn2"]},
		"save_path = "+strconv.Quote(c.save+"/site/{user}"))
	ctr := session(t, alice, "")

	// The first opening never reaches bcn1: the request fails, and its
	// credential was decoded by nobody.
	r := m.cli(t, alice, "sessions", "--node", "bcn1")
	assert.Equal(t, r.code, 1, "%s", r)
	assert.Check(t, is.Contains(r.stderr, "lost on the way"))
	assert.Assert(t, tap.stolen != nil)
	// The next one does: alice sees her session, and bcn2 has a session
	// with the manager too.
	r = m.cli(t, alice, "sessions", "--node", "bcn1")
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Check(t, is.Contains(r.stdout, ctr))
	r = m.cli(t, alice, "sessions", "--node", "bcn2")
	assert.Equal(t, r.code, 0, "%s", r)
	signed := tap.last(api.RouteSessions)
	assert.Assert(t, signed != nil)
	opened := tap.last(reqauth.Route)

	code, body := tap.stolen.replay(t, c.urls["bcn2"])
	assert.Check(t, is.Equal(code, http.StatusUnauthorized))
	assert.Check(t, is.Contains(body, `it was made for "bcn1", this is "bcn2"`), "the opening's credential names its node")

	code, body = signed.replay(t, c.urls["bcn2"])
	assert.Check(t, is.Equal(code, http.StatusUnauthorized))
	assert.Check(t, is.Contains(body, "no such manager session"))
	assert.Check(t, !strings.Contains(body, ctr))

	code, body = signed.replay(t, c.urls["bcn1"])
	assert.Check(t, is.Equal(code, http.StatusUnauthorized))
	assert.Check(t, is.Contains(body, "replayed"))

	changed := *signed
	changed.uri = api.RouteSessions + "?" + url.Values{api.QueryUser: {bob}}.Encode()
	code, body = changed.replay(t, c.urls["bcn1"])
	assert.Check(t, is.Equal(code, http.StatusUnauthorized))
	assert.Check(t, is.Contains(body, "signature does not match"))

	code, body = opened.replay(t, c.urls["bcn1"])
	assert.Check(t, is.Equal(code, http.StatusUnauthorized))
	assert.Check(t, is.Contains(body, "replayed credential"))

	// None of it disturbed the manager.
	r = m.cli(t, alice, "sessions", "--node", "bcn1")
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Check(t, is.Contains(r.stdout, ctr))
}

// On its TCP port the agent checks the credential before it reads a
// request's body: a caller that announces 64 KiB and sends none is
// refused at once instead of holding the agent until it gives up.
func TestAgentChecksTheCredentialBeforeTheBody(t *testing.T) {
	c := newCluster(t, []string{"bcn1"}, 0, nil)
	addr := strings.TrimPrefix(c.urls["bcn1"], "http://")
	unknown := "Baicommit-Session s=" + strings.Repeat("0", 32) + ",n=1,t=" + strconv.FormatInt(time.Now().Unix(), 10) +
		",a=0,b=" + strings.Repeat("0", 64) + ",m=" + strings.Repeat("A", 43)
	for _, tc := range []struct {
		name, path, auth, want string
		challenge              bool
	}{
		{name: "no credential", path: api.RouteFreezes, want: "answers only baicommit-manager"},
		{name: "a session the agent does not know", path: api.RouteFreezes, auth: unknown, want: "no such manager session", challenge: true},
		{name: "a forged MUNGE credential opening a session", path: reqauth.Route, auth: "MUNGE MUNGE:AwQFAAB3ZWxsIHRoaXMgaXMgbm90IGEgcmVhbCBvbmU=:", want: "invalid credential"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			assert.NilError(t, err)
			defer conn.Close()
			head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 65536\r\n", tc.path, addr)
			if tc.auth != "" {
				head += "Authorization: " + tc.auth + "\r\n"
			}
			_, err = io.WriteString(conn, head+"\r\n")
			assert.NilError(t, err)
			// No body follows. An agent that read it first would wait.
			assert.NilError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			assert.NilError(t, err, "no answer without the body: the agent waits for it")
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			assert.Check(t, is.Equal(resp.StatusCode, http.StatusUnauthorized))
			assert.Check(t, is.Contains(string(b), tc.want))
			assert.Check(t, is.Equal(strings.Contains(resp.Header.Get("WWW-Authenticate"), "no_session"), tc.challenge))
		})
	}
	ts, err := c.agents["bcn1"].client(t).Tasks(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Len(ts, 0))
}
