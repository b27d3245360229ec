package manager

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/manager/websession"
)

func TestLoginLink(t *testing.T) {
	const cred = "MUNGE:AwQ+b/c=:"
	for _, tc := range []struct{ webURL, want string }{
		{"", "web/login#MUNGE:AwQ+b%2Fc=:"},
		{"https://baicommit.example.org", "https://baicommit.example.org/web/login#MUNGE:AwQ+b%2Fc=:"},
		{"https://baicommit.example.org/", "https://baicommit.example.org/web/login#MUNGE:AwQ+b%2Fc=:"},
		{"https://ood.example.org/rnode/mgr/7470/web/", "https://ood.example.org/rnode/mgr/7470/web/login#MUNGE:AwQ+b%2Fc=:"},
		{"https://ood.example.org/rnode/mgr/7470/web", "https://ood.example.org/rnode/mgr/7470/web/login#MUNGE:AwQ+b%2Fc=:"},
	} {
		assert.Check(t, is.Equal(loginLink(tc.webURL, cred), tc.want), "web_url %q", tc.webURL)
	}
}

// webTester sends browser requests to a manager with no agents: what is
// checked here is who may ask, not what the agents answer.
type webTester struct {
	m     *Manager
	h     http.Handler
	u     *user.User
	slurm *fakeSlurm
}

func newWebTester(t testing.TB) *webTester {
	u, err := user.Current()
	assert.NilError(t, err)
	cfg := DefaultConfig()
	cfg.Nodes = []string{"cn01"}
	cfg.WebProxyHeader, cfg.WebTrustedProxies = "X-Remote-User", []string{"10.0.0.0/8"}
	s := &fakeSlurm{}
	m := newTestManager(cfg, s)
	return &webTester{m: m, h: m.Handler(), u: u, slurm: s}
}

func (wt *webTester) cookie(expires time.Duration) (*http.Cookie, string) {
	uid, _ := strconv.Atoi(wt.u.Uid)
	s := websession.New(uid, wt.u.Username, expires, time.Now())
	return &http.Cookie{Name: cookieName, Value: wt.m.web.signer.Encode(s)}, wt.m.web.signer.CSRFToken(sessionBrowser(nil, s).binding)
}

func (wt *webTester) do(method, path, body string, edit func(*http.Request)) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = "192.0.2.7:40000"
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if edit != nil {
		edit(req)
	}
	w := httptest.NewRecorder()
	wt.h.ServeHTTP(w, req)
	return w
}

func TestWebAuthentication(t *testing.T) {
	wt := newWebTester(t)
	good, csrf := wt.cookie(time.Hour)
	old, _ := wt.cookie(-time.Second)
	forged := &http.Cookie{Name: cookieName, Value: good.Value[:len(good.Value)-2] + "AA"}
	withCookie := func(c *http.Cookie) func(*http.Request) { return func(r *http.Request) { r.AddCookie(c) } }
	fromProxy := func(addr, name string) func(*http.Request) {
		return func(r *http.Request) { r.RemoteAddr = addr; r.Header.Set("X-Remote-User", name) }
	}
	for _, tc := range []struct {
		name string
		edit func(*http.Request)
		code int
		want string
	}{
		{"signed in", withCookie(good), 200, `"via":"link"`},
		{"no cookie", nil, 401, "not signed in"},
		{"forged cookie", withCookie(forged), 401, "not signed in"},
		{"expired cookie", withCookie(old), 401, "expired"},
		{"trusted proxy", fromProxy("10.1.2.3:5555", wt.u.Username), 200, `"via":"proxy"`},
		{"trusted proxy over IPv6-mapped IPv4", fromProxy("[::ffff:10.1.2.3]:5555", wt.u.Username), 200, `"via":"proxy"`},
		{"header from anyone else", fromProxy("192.0.2.7:5555", wt.u.Username), 403, "accepted only from"},
		{"header from anyone else, with a good cookie too", func(r *http.Request) {
			fromProxy("192.0.2.7:5555", wt.u.Username)(r)
			r.AddCookie(good)
		}, 403, "accepted only from"},
		{"proxy naming a uid", fromProxy("10.1.2.3:5555", wt.u.Uid), 403, "not a uid"},
		{"proxy naming nobody", fromProxy("10.1.2.3:5555", "no-such-user-here"), 403, "no account"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := wt.do(http.MethodGet, "/web/api/me", "", tc.edit)
			assert.Check(t, is.Equal(w.Code, tc.code), w.Body.String())
			assert.Check(t, is.Contains(w.Body.String(), tc.want))
			assert.Check(t, is.Equal(w.Header().Get("Cache-Control"), "no-store"))
		})
	}

	// The request token: checked on what changes something, bound to the session.
	_, otherCSRF := wt.cookie(time.Hour)
	for _, tc := range []struct {
		name string
		edit func(*http.Request)
		code int
		want string
	}{
		{"no token", func(r *http.Request) { r.AddCookie(good) }, 403, "request token"},
		{"another session's token", func(r *http.Request) { r.AddCookie(good); r.Header.Set(csrfHeader, otherCSRF) }, 403, "request token"},
		{"cross-site", func(r *http.Request) {
			r.AddCookie(good)
			r.Header.Set(csrfHeader, csrf)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
		}, 403, "cross-origin"},
		// Past every check: the handler itself wants a node.
		{"good", func(r *http.Request) { r.AddCookie(good); r.Header.Set(csrfHeader, csrf) }, 400, "say where the session runs"},
	} {
		t.Run("freeze/"+tc.name, func(t *testing.T) {
			w := wt.do(http.MethodPost, "/web/api/freezes", `{"container": "c1"}`, tc.edit)
			assert.Check(t, is.Equal(w.Code, tc.code), w.Body.String())
			assert.Check(t, is.Contains(strings.ToLower(w.Body.String()), tc.want))
		})
	}

	// Even root is no admin on the page: it acts on its own sessions only.
	w := wt.do(http.MethodGet, "/web/api/sessions?user=someone-else", "", withCookie(good))
	assert.Check(t, is.Equal(w.Code, http.StatusForbidden), w.Body.String())
	assert.Check(t, is.Contains(w.Body.String(), "not yours"))
}

func TestWebSignInSetsAFreshCookie(t *testing.T) {
	wt := newWebTester(t)
	planted, _ := wt.cookie(time.Hour)
	// A sign-in with no valid link sets no cookie, whatever the browser holds.
	w := wt.do(http.MethodPost, "/web/api/login", `{"link": ""}`, func(r *http.Request) { r.AddCookie(planted) })
	assert.Check(t, is.Equal(w.Code, http.StatusUnauthorized), w.Body.String())
	assert.Check(t, is.Len(w.Result().Cookies(), 0))
	// Signing out clears the cookie.
	w = wt.do(http.MethodPost, "/web/api/logout", "", func(r *http.Request) { r.AddCookie(planted) })
	assert.Check(t, is.Equal(w.Code, http.StatusNoContent))
	cs := w.Result().Cookies()
	assert.Assert(t, is.Len(cs, 1))
	assert.Check(t, is.Equal(cs[0].Value, ""))
	assert.Check(t, cs[0].MaxAge < 0)
	assert.Check(t, is.Equal(cs[0].Name, cookieName))
	assert.Check(t, cs[0].HttpOnly)
	assert.Check(t, is.Equal(cs[0].SameSite, http.SameSiteStrictMode))

	// Over HTTPS the cookie is Secure and __Host-: bound to this host and
	// path, never sent in clear.
	w = wt.do(http.MethodPost, "/web/api/logout", "", func(r *http.Request) { r.TLS = &tls.ConnectionState{} })
	cs = w.Result().Cookies()
	assert.Assert(t, is.Len(cs, 1))
	assert.Check(t, is.Equal(cs[0].Name, secureCookieName))
	assert.Check(t, cs[0].Secure)
	assert.Check(t, is.Equal(cs[0].Path, "/"))
}

func TestWebPageRoutes(t *testing.T) {
	wt := newWebTester(t)
	w := wt.do(http.MethodGet, "/", "", nil)
	assert.Check(t, is.Equal(w.Code, http.StatusFound))
	assert.Check(t, is.Equal(w.Header().Get("Location"), "web/"))
	w = wt.do(http.MethodGet, "/web/", "", nil)
	assert.Check(t, is.Equal(w.Code, http.StatusOK))
	assert.Check(t, is.Contains(w.Body.String(), "Your sessions"))
	w = wt.do(http.MethodGet, "/web/login", "", nil)
	assert.Check(t, is.Contains(w.Body.String(), `id="signin"`))
}

// An open page refreshes its sessions every few seconds: Slurm is asked
// where the user's jobs run once for many refreshes.
func TestWebSessionsAskSlurmOnce(t *testing.T) {
	wt := newWebTester(t)
	good, _ := wt.cookie(time.Hour)
	for range 5 {
		w := wt.do(http.MethodGet, "/web/api/sessions", "", func(r *http.Request) { r.AddCookie(good) })
		assert.Check(t, is.Equal(w.Code, http.StatusOK), w.Body.String())
		assert.Check(t, is.Equal(strings.TrimSpace(w.Body.String()), "[]"))
	}
	assert.Check(t, is.Equal(wt.slurm.askedUser, 1))
}
