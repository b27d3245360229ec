package manager

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
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
	cfg.WebProxySecretFile = filepath.Join(t.TempDir(), "proxy.secret")
	assert.NilError(t, os.WriteFile(cfg.WebProxySecretFile, []byte(proxySecret+"\n"), 0o600))
	cfg.WebPushRegistries = []string{"registry.example.org"}
	s := &fakeSlurm{}
	m := newTestManager(cfg, s)
	return &webTester{m: m, h: m.Handler(), u: u, slurm: s}
}

// proxySecret is the test proxy's secret.
const proxySecret = "the proxy's secret, 32 bytes or more"

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
		return func(r *http.Request) {
			r.RemoteAddr = addr
			r.Header.Set("X-Remote-User", name)
			r.Header.Set("X-Baicommit-Proxy-Secret", proxySecret)
		}
	}
	withoutSecret := func(secret string) func(*http.Request) {
		return func(r *http.Request) {
			fromProxy("10.1.2.3:5555", wt.u.Username)(r)
			r.Header.Set("X-Baicommit-Proxy-Secret", secret)
		}
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
		{"the proxy's address without its secret", withoutSecret(""), 403, "proves itself with its secret"},
		{"the proxy's address with another secret", withoutSecret(proxySecret + "x"), 403, "proves itself with its secret"},
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

	// A push from the page goes only to the site's registries.
	for ref, want := range map[string]string{
		"evil.example/alice/box:v1":         "pushes only to this site's registries (registry.example.org), not to evil.example",
		"registry.example.org/alice/box:v1": "say where the session runs",
	} {
		w := wt.do(http.MethodPost, "/web/api/freezes", `{"container": "c1", "push": {"ref": "`+ref+`"}}`,
			func(r *http.Request) { r.AddCookie(good); r.Header.Set(csrfHeader, csrf) })
		assert.Check(t, is.Contains(w.Body.String(), want), ref)
	}

	// Even root is no admin on the page: it acts on its own sessions only.
	w := wt.do(http.MethodGet, "/web/api/sessions?user=someone-else", "", withCookie(good))
	assert.Check(t, is.Equal(w.Code, http.StatusForbidden), w.Body.String())
	assert.Check(t, is.Contains(w.Body.String(), "not yours"))
}

// A proxy's user gets a session of their own from me, and the request
// token is bound to it: not the same for every page of that user forever.
func TestWebProxyRequestTokenPerSession(t *testing.T) {
	wt := newWebTester(t)
	viaProxy := func(r *http.Request) {
		r.RemoteAddr = "10.1.2.3:5555"
		r.Header.Set("X-Remote-User", wt.u.Username)
		r.Header.Set("X-Baicommit-Proxy-Secret", proxySecret)
	}
	me := func() (*http.Cookie, string) {
		w := wt.do(http.MethodGet, "/web/api/me", "", viaProxy)
		assert.Assert(t, is.Equal(w.Code, http.StatusOK), w.Body.String())
		var got webMe
		assert.NilError(t, json.Unmarshal(w.Body.Bytes(), &got))
		cs := w.Result().Cookies()
		assert.Assert(t, is.Len(cs, 1))
		return cs[0], got.CSRF
	}
	c1, t1 := me()
	c2, t2 := me()
	assert.Check(t, t1 != t2, "two pages of the proxy's user share a request token")
	freeze := func(c *http.Cookie, token string) *httptest.ResponseRecorder {
		return wt.do(http.MethodPost, "/web/api/freezes", `{"container": "c1"}`, func(r *http.Request) {
			viaProxy(r)
			if c != nil {
				r.AddCookie(c)
			}
			r.Header.Set(csrfHeader, token)
		})
	}
	assert.Check(t, is.Contains(freeze(c1, t1).Body.String(), "say where the session runs"))
	assert.Check(t, is.Contains(freeze(c2, t1).Body.String(), "request token"))
	assert.Check(t, is.Contains(freeze(nil, t1).Body.String(), "request token"))
	// A cookie of another user is not this user's session.
	other := websession.New(4242, "someone-else", time.Hour, time.Now())
	assert.Check(t, is.Contains(freeze(&http.Cookie{Name: cookieName, Value: wt.m.web.signer.Encode(other)},
		wt.m.web.signer.CSRFToken(sessionBrowser(nil, other).binding)).Body.String(), "request token"))
}

// Signing out revokes the session: a copy of its cookie is refused after.
func TestWebSignOutRevokes(t *testing.T) {
	wt := newWebTester(t)
	good, _ := wt.cookie(time.Hour)
	with := func(r *http.Request) { r.AddCookie(good) }
	assert.Check(t, is.Equal(wt.do(http.MethodGet, "/web/api/me", "", with).Code, http.StatusOK))
	assert.Check(t, is.Equal(wt.do(http.MethodPost, "/web/api/logout", "", with).Code, http.StatusNoContent))
	w := wt.do(http.MethodGet, "/web/api/me", "", with)
	assert.Check(t, is.Equal(w.Code, http.StatusUnauthorized))
	assert.Check(t, is.Contains(w.Body.String(), "signed out"))
}

// Over HTTPS only the __Host- cookie counts: a plain one could have been
// set by a sibling host or over plain HTTP.
func TestWebOnlyHostCookieOverHTTPS(t *testing.T) {
	wt := newWebTester(t)
	good, _ := wt.cookie(time.Hour)
	overTLS := func(c *http.Cookie) func(*http.Request) {
		return func(r *http.Request) { r.TLS = &tls.ConnectionState{}; r.AddCookie(c) }
	}
	assert.Check(t, is.Equal(wt.do(http.MethodGet, "/web/api/me", "", overTLS(good)).Code, http.StatusUnauthorized))
	host := &http.Cookie{Name: secureCookieName, Value: good.Value}
	assert.Check(t, is.Equal(wt.do(http.MethodGet, "/web/api/me", "", overTLS(host)).Code, http.StatusOK))
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
