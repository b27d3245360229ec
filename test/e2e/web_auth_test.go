package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"

	"github.com/baicommit/baicommit/api"
)

// webSession is a browser's sign-in, as plain HTTP sees it.
type webSession struct {
	cookie *http.Cookie
	csrf   string
}

// webSignIn trades a fresh login link of who for a session cookie, sending
// the cookies a browser might already hold.
func webSignIn(t *testing.T, m *managerProc, who string, held ...*http.Cookie) webSession {
	t.Helper()
	l := webLink(t, m, who)
	_, cred, _ := strings.Cut(l.URL, "#")
	body, _ := json.Marshal(map[string]string{"link": cred})
	req, err := http.NewRequest(http.MethodPost, m.url+"/web/api/login", bytes.NewReader(body))
	assert.NilError(t, err)
	sameOrigin(req, m.url)
	for _, c := range held {
		req.AddCookie(c)
	}
	code, out, resp := send(t, http.DefaultClient, req)
	assert.Equal(t, code, http.StatusOK, out)
	var me struct {
		User string `json:"user"`
		CSRF string `json:"csrf_token"`
	}
	assert.NilError(t, json.Unmarshal([]byte(out), &me))
	assert.Check(t, is.Equal(me.User, who))
	for _, c := range resp.Cookies() {
		if c.Name == "baicommit_session" {
			assert.Check(t, c.HttpOnly, "session cookie readable by scripts")
			assert.Check(t, is.Equal(c.SameSite, http.SameSiteStrictMode))
			return webSession{cookie: c, csrf: me.CSRF}
		}
	}
	t.Fatalf("sign-in set no session cookie: %v", resp.Header)
	return webSession{}
}

// sameOrigin makes req look like the page's own fetch.
func sameOrigin(req *http.Request, origin string) {
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
}

func send(t *testing.T, hc *http.Client, req *http.Request) (int, string, *http.Response) {
	t.Helper()
	resp, err := hc.Do(req)
	assert.NilError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

// call sends one request of the page as s.
func (s webSession) call(t *testing.T, m *managerProc, method, path, body string, edit func(*http.Request)) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, m.url+path, rd)
	assert.NilError(t, err)
	sameOrigin(req, m.url)
	if s.cookie != nil {
		req.AddCookie(s.cookie)
	}
	req.Header.Set("X-CSRF-Token", s.csrf)
	if edit != nil {
		edit(req)
	}
	code, out, _ := send(t, http.DefaultClient, req)
	return code, out
}

// Cross-site requests, requests without the page's token and planted
// session cookies change nothing; the page never lends its user admin
// rights.
func TestWebForgeryAndFixation(t *testing.T) {
	c := newCluster(t, []string{"bcn1"}, 1, nil)
	m := c.managers[0]
	ctr := session(t, alice, "")

	// bob (an admin of this cluster) signs in; his cookie is planted in
	// alice's browser before she signs in: she gets a session of her own.
	bobs := webSignIn(t, m, bob)
	alices := webSignIn(t, m, alice, bobs.cookie)
	assert.Check(t, alices.cookie.Value != bobs.cookie.Value, "sign-in kept the planted cookie")
	code, out := alices.call(t, m, http.MethodGet, "/web/api/me", "", nil)
	assert.Equal(t, code, http.StatusOK, out)
	assert.Check(t, is.Contains(out, `"user":"`+alice+`"`))

	freeze := fmt.Sprintf(`{"container": %q, "node": "bcn1"}`, ctr)
	for _, tc := range []struct {
		name string
		s    webSession
		edit func(*http.Request)
		code int
		want string
	}{
		{"no request token", alices, func(r *http.Request) { r.Header.Del("X-CSRF-Token") }, 403, "request token"},
		{"another session's token", webSession{alices.cookie, bobs.csrf}, nil, 403, "request token"},
		{"cross-site fetch", alices, func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }, 403, "cross-origin"},
		{"another origin, older browser", alices, func(r *http.Request) {
			r.Header.Del("Sec-Fetch-Site")
			r.Header.Set("Origin", "http://evil.example")
		}, 403, "cross-origin"},
		{"forged cookie", webSession{&http.Cookie{Name: "baicommit_session", Value: alices.cookie.Value + "x"}, alices.csrf}, nil, 401, "baicommit web"},
		{"no cookie", webSession{nil, alices.csrf}, nil, 401, "not signed in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := tc.s.call(t, m, http.MethodPost, "/web/api/freezes", freeze, tc.edit)
			assert.Check(t, is.Equal(code, tc.code), out)
			assert.Check(t, is.Contains(strings.ToLower(out), tc.want))
		})
	}
	ts, err := c.agents["bcn1"].client(t).Tasks(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Len(ts, 0), "a refused request started a freeze")

	// On the page, bob is no admin: alice's sessions stay out of his reach.
	code, out = bobs.call(t, m, http.MethodGet, "/web/api/sessions?"+url.Values{api.QueryUser: {alice}, api.QueryNode: {"bcn1"}}.Encode(), "", nil)
	assert.Check(t, is.Equal(code, http.StatusForbidden), out)
	code, out = bobs.call(t, m, http.MethodPost, "/web/api/freezes", fmt.Sprintf(`{"container": %q, "node": "bcn1", "user": %q}`, ctr, alice), nil)
	assert.Check(t, is.Equal(code, http.StatusForbidden), out)
	assert.Check(t, is.Contains(out, "not yours"))

	// The same request, from the page itself, works.
	code, out = alices.call(t, m, http.MethodPost, "/web/api/freezes", freeze, nil)
	assert.Equal(t, code, http.StatusAccepted, out)
	var task api.Task
	assert.NilError(t, json.Unmarshal([]byte(out), &task))
	done := c.agents["bcn1"].waitTask(t, task.ID)
	assert.Check(t, is.Equal(done.State, api.StateSucceeded), done.Error)
	assert.Check(t, is.Equal(done.Owner, alice))
}

// Behind an authenticating proxy (Open OnDemand, an SSO gateway) the page
// believes the proxy's user header, only from the proxy's address and only
// with the proxy's secret: any other process on the proxy's host (bob,
// logged in there) sending the header is refused, loudly.
func TestWebTrustedProxy(t *testing.T) {
	const header = "X-Remote-User"
	c := newCluster(t, []string{slurmNode(t)}, 0, nil)
	secretFile := webKey(t)
	secret, err := os.ReadFile(secretFile)
	assert.NilError(t, err)
	m := startManager(t, c.urls, `web_proxy_header = "`+header+`"`, `web_trusted_proxies = ["127.0.0.2"]`,
		"web_proxy_secret_file = "+strconv.Quote(secretFile))
	sbatch(t, alice) // the page lists the sessions on the nodes of the user's jobs
	ctr := session(t, alice, "")

	// Anyone else sending the header is refused, loudly.
	req, _ := http.NewRequest(http.MethodGet, m.url+"/web/api/me", nil)
	req.Header.Set(header, alice)
	code, out, _ := send(t, http.DefaultClient, req)
	assert.Check(t, is.Equal(code, http.StatusForbidden), out)
	assert.Check(t, is.Contains(out, "accepted only from the site's authenticating proxy"))
	// The manager's log reaches us through a pipe, a moment after its answer.
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if strings.Contains(m.log.String(), "refused a proxy header from an untrusted address") {
			return poll.Success()
		}
		return poll.Continue("the refusal is not logged")
	}, poll.WithTimeout(5*time.Second))

	// Bob, a user on the proxy's host: its address, but not its secret.
	r := runAs(t, bob, "curl", "-sS", "--interface", "127.0.0.2", "-H", header+": "+alice,
		"-w", "\n%{http_code}", m.url+"/web/api/me")
	assert.Equal(t, r.code, 0, "%s", r)
	assert.Check(t, strings.HasSuffix(strings.TrimSpace(r.stdout), "\n403"), "bob acted as alice through the proxy header: %s", r)
	assert.Check(t, is.Contains(r.stdout, "proves itself with its secret"))
	assert.Check(t, !strings.Contains(r.stdout, `"user":"`+alice+`"`))
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if strings.Contains(m.log.String(), "refused a proxy header without the proxy's secret") {
			return poll.Success()
		}
		return poll.Continue("the refusal is not logged")
	}, poll.WithTimeout(5*time.Second))

	// The proxy: on loopback, reaching the manager from 127.0.0.2.
	fromProxy := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}).DialContext}
	target, _ := url.Parse(m.url)
	rp := &httputil.ReverseProxy{
		Transport: fromProxy,
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
			// What the proxy authenticated, never what the browser sent.
			r.Out.Header.Set(header, alice)
			r.Out.Header.Set("X-Baicommit-Proxy-Secret", strings.TrimSpace(string(secret)))
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	proxyURL := "http://" + ln.Addr().String()

	ctx := newBrowser(t)
	do(t, ctx, 60*time.Second, chromedp.Navigate(proxyURL+"/web/"),
		chromedp.WaitVisible(css("%s button.commit", row(ctr))))
	assert.Check(t, is.Equal(text(t, ctx, id("who")), "Signed in as "+alice))
	// No sign-out button: the proxy, not the page, decides who is in.
	hidden := get(t, ctx, chromedp.Evaluate[bool](`document.getElementById("signout").hidden`))
	assert.Check(t, hidden)
	screenshot(t, ctx, "web-behind-proxy")

	// Commit through the proxy: the request token is bound to the proxy's user.
	do(t, ctx, 20*time.Second,
		chromedp.Click(css("%s button.commit", row(ctr))),
		chromedp.WaitVisible(id("commit-dialog")),
		chromedp.Click(id("commit-submit")),
		chromedp.WaitVisible(css("%s .archive-path", row(ctr))))
	p := text(t, ctx, css("%s .archive-path", row(ctr)))
	assert.Check(t, strings.HasSuffix(p, ".tar.gz"), p)
	assert.Check(t, is.Equal(attr(t, ctx, css("%s .archive-digest", row(ctr)), "data-digest"), "sha256:"+fileSHA256(t, p)))

	// Through the page, a push goes only to a registry the site lists
	// (here none): a browser can be made to send what its user never meant.
	pc := &http.Client{Jar: newJar(t)}
	code, out, _ = send(t, pc, webReq(t, http.MethodGet, proxyURL+"/web/api/me", "", ""))
	assert.Equal(t, code, http.StatusOK, out)
	var me struct {
		CSRF string `json:"csrf_token"`
	}
	assert.NilError(t, json.Unmarshal([]byte(out), &me))
	code, out, _ = send(t, pc, webReq(t, http.MethodPost, proxyURL+"/web/api/freezes", me.CSRF,
		fmt.Sprintf(`{"container": %q, "node": %q, "push": {"ref": "evil.example/alice/box:v1"}}`, ctr, slurmNode(t))))
	assert.Check(t, is.Equal(code, http.StatusForbidden), out)
	assert.Check(t, is.Contains(out, "pushes to no registry"))

	// Another page of alice's, through the proxy: a session and a request
	// token of its own; the first page's token is no good with it.
	pc2 := &http.Client{Jar: newJar(t)}
	code, out, _ = send(t, pc2, webReq(t, http.MethodGet, proxyURL+"/web/api/me", "", ""))
	assert.Equal(t, code, http.StatusOK, out)
	var me2 struct {
		CSRF string `json:"csrf_token"`
	}
	assert.NilError(t, json.Unmarshal([]byte(out), &me2))
	assert.Check(t, me2.CSRF != me.CSRF, "every page of the proxy's user has the same request token")
	code, out, _ = send(t, pc2, webReq(t, http.MethodPost, proxyURL+"/web/api/freezes", me.CSRF,
		fmt.Sprintf(`{"container": %q, "node": %q}`, ctr, slurmNode(t))))
	assert.Check(t, is.Equal(code, http.StatusForbidden), out)
	assert.Check(t, is.Contains(out, "request token"))
}

// newJar is a cookie jar, as a browser keeps.
func newJar(t *testing.T) http.CookieJar {
	t.Helper()
	jar, err := cookiejar.New(nil)
	assert.NilError(t, err)
	return jar
}

// webReq is one request of the page's own, with its request token.
func webReq(t *testing.T, method, url, csrf, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	assert.NilError(t, err)
	origin := url[:strings.Index(url, "/web/")]
	sameOrigin(req, origin)
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	return req
}

// Over HTTPS only the __Host- cookie counts (a cookie without the prefix
// can be set by a sibling host or over plain HTTP: someone else's session
// planted in a browser), and signing out revokes the session on every
// replica, so that a copy of its cookie taken before is refused after.
func TestWebCookiesAndSignOut(t *testing.T) {
	dir, err := os.MkdirTemp("", "baicommit-e2e-pki-")
	assert.NilError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	assert.NilError(t, os.Chmod(dir, 0o755))
	caFile, certFile, keyFile := writeTestPKI(t, dir)
	revoked := filepath.Join(dir, "revoked")
	assert.NilError(t, os.Mkdir(revoked, 0o700))
	giveToManager(t, revoked)
	c := newCluster(t, []string{"bcn1"}, 0, nil)
	keys := []string{"tls_cert = " + strconv.Quote(certFile), "tls_key = " + strconv.Quote(keyFile),
		"web_key_file = " + strconv.Quote(webKey(t)), "web_revoked_dir = " + strconv.Quote(revoked)}
	m0, m1 := startManager(t, c.urls, keys...), startManager(t, c.urls, keys...)
	pem, err := os.ReadFile(caFile)
	assert.NilError(t, err)
	pool := x509.NewCertPool()
	assert.Assert(t, pool.AppendCertsFromPEM(pem))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	signIn := func(m *managerProc, who string) *http.Cookie {
		l := runAs(t, who, bins.cli, "--manager", m.url, "--ca", caFile, "web", "--json")
		assert.Equal(t, l.code, 0, "%s", l)
		var link api.WebLink
		assert.NilError(t, json.Unmarshal([]byte(l.stdout), &link))
		_, cred, _ := strings.Cut(link.URL, "#")
		body, _ := json.Marshal(map[string]string{"link": cred})
		code, out, resp := send(t, hc, webReq(t, http.MethodPost, m.url+"/web/api/login", "", string(body)))
		assert.Equal(t, code, http.StatusOK, out)
		for _, ck := range resp.Cookies() {
			if ck.Name == "__Host-baicommit_session" {
				return ck
			}
		}
		t.Fatalf("no __Host- session cookie: %v", resp.Header)
		return nil
	}
	me := func(m *managerProc, ck *http.Cookie) (int, string) {
		req := webReq(t, http.MethodGet, m.url+"/web/api/me", "", "")
		req.AddCookie(ck)
		code, out, _ := send(t, hc, req)
		return code, out
	}

	// Bob's own session, planted in alice's browser without the prefix.
	bobs := signIn(m0, bob)
	code, out := me(m0, &http.Cookie{Name: "baicommit_session", Value: bobs.Value})
	assert.Check(t, is.Equal(code, http.StatusUnauthorized), "a cookie without __Host- passed over HTTPS: %s", out)

	alices := signIn(m0, alice)
	for _, m := range []*managerProc{m0, m1} {
		code, out = me(m, alices)
		assert.Check(t, is.Equal(code, http.StatusOK), out)
	}
	req := webReq(t, http.MethodPost, m0.url+"/web/api/logout", "", "")
	req.AddCookie(alices)
	code, out, _ = send(t, hc, req)
	assert.Equal(t, code, http.StatusNoContent, out)
	for _, m := range []*managerProc{m0, m1} {
		code, out = me(m, alices)
		assert.Check(t, is.Equal(code, http.StatusUnauthorized), "a signed-out session still works on %s: %s", m.url, out)
		assert.Check(t, is.Contains(out, "signed out"))
	}
	code, out = me(m1, bobs)
	assert.Check(t, is.Equal(code, http.StatusOK), "another session was signed out too: %s", out)
}
