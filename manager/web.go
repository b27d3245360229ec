package manager

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.podman.io/image/v5/docker/reference"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/httperr"
	"github.com/baicommit/baicommit/internal/munge"
	"github.com/baicommit/baicommit/manager/websession"
	"github.com/baicommit/baicommit/manager/webui"
)

// The web page lives under /web/: the page itself (package webui) and the
// JSON routes it calls under /web/api/, which are the API's own handlers
// behind browser authentication instead of MUNGE.
const (
	webRoot  = "/web/"
	webAPI   = "/web/api/"
	webLogin = webRoot + "login"
)

// Browser authentication: a cookie the manager signed (after a login link)
// or, from a trusted proxy, a header naming the user.
const (
	cookieName = "baicommit_session"
	// secureCookieName is used over HTTPS: browsers keep a __Host- cookie
	// to this host and path / only, and only when sent over TLS.
	secureCookieName = "__Host-baicommit_session"
	// csrfHeader carries the request token on every request that changes
	// something; a cross-site form cannot set a header.
	csrfHeader = "X-CSRF-Token"
)

// loginMagic starts the payload of a login link's credential, so that no
// other MUNGE credential the manager made passes as one.
const loginMagic = "baicommit-web-login/1"

// webAuth is what the manager needs to know browsers.
type webAuth struct {
	signer  *websession.Signer
	proxies []netip.Prefix
	// proxySecret is what the proxy proves itself with (its SHA-256, so
	// that comparing it takes the same time whatever was sent).
	proxySecret [sha256.Size]byte
	revoked     *websession.Revocations
	// self is the manager's own uid: login links are credentials it made
	// for itself, so no one else can make one.
	self int
	cop  *http.CrossOriginProtection
}

func newWebAuth(cfg Config, log *slog.Logger) (*webAuth, error) {
	key := websession.RandomKey()
	if cfg.WebKeyFile != "" {
		k, err := websession.LoadKey(cfg.WebKeyFile)
		if err != nil {
			return nil, err
		}
		key = k
	} else {
		log.Warn("no web_key_file: web sessions are signed with a random key, end when the manager restarts and work on this replica only")
	}
	sg, err := websession.NewSigner(key)
	if err != nil {
		return nil, err
	}
	proxies, err := cfg.trustedProxies()
	if err != nil {
		return nil, err
	}
	var secret [sha256.Size]byte
	if cfg.WebProxySecretFile != "" {
		// The same rules as the session key: the manager's account alone
		// may read it, and it is long enough not to be guessed.
		b, err := websession.LoadKey(cfg.WebProxySecretFile)
		if err != nil {
			return nil, fmt.Errorf("web_proxy_secret_file: %w", err)
		}
		secret = sha256.Sum256(b)
	}
	revoked, err := websession.NewRevocations(cfg.WebRevokedDir)
	if err != nil {
		return nil, err
	}
	cop := http.NewCrossOriginProtection()
	if cfg.WebURL != "" {
		// Behind a proxy that rewrites Host, the page's origin is web_url's.
		u, _ := url.Parse(cfg.WebURL)
		if err := cop.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
			return nil, fmt.Errorf("web_url: %w", err)
		}
	}
	return &webAuth{signer: sg, proxies: proxies, proxySecret: secret, revoked: revoked, self: os.Getuid(), cop: cop}, nil
}

// webRoutes adds the page and its JSON routes to mux.
func (m *Manager) webRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+api.RouteWebLinks, m.authed(m.handleWebLink))

	page := webui.Handler()
	mux.Handle("GET "+webRoot, page)
	mux.Handle("GET "+webLogin, page)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		// Relative (http.Redirect would make it absolute), so that it also
		// holds behind a proxy that serves the manager below a prefix.
		w.Header().Set("Location", strings.TrimPrefix(webRoot, "/"))
		w.WriteHeader(http.StatusFound)
	})

	// Every route of the page refuses cross-origin requests that change
	// something (Sec-Fetch-Site, Origin), before any handler runs.
	route := func(pattern string, h http.Handler) { mux.Handle(pattern, m.web.cop.Handler(noStore(h))) }
	route("POST "+webAPI+"login", http.HandlerFunc(m.handleWebSignIn))
	route("POST "+webAPI+"logout", http.HandlerFunc(m.handleWebSignOut))
	route("GET "+webAPI+"me", m.webAuthed(m.handleWebMe))
	route("GET "+webAPI+"sessions", m.webAuthed(m.handleSessions))
	route("POST "+webAPI+"freezes", m.webAuthed(m.handleFreeze))
	route("GET "+webAPI+"tasks/{id}", m.webAuthed(m.handleTask))
	route("GET "+webAPI+"archives", m.webAuthed(m.handleArchives))
	route("GET "+webAPI+"usage", m.webAuthed(m.handleUsage))
	route("POST "+webAPI+"archives/remove", m.webAuthed(m.handleRemove))
}

// noStore keeps answers about a user out of shared and browser caches.
func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// browser is who a browser request comes from.
type browser struct {
	id *Identity
	// binding ties the request token to the browser's session: "" for a
	// proxy's user who has none yet (me gives them one).
	binding string
	via     string // "link" or "proxy"
	expires time.Time
}

// sessionBrowser is the browser that holds session s of id.
func sessionBrowser(id *Identity, s websession.Session) *browser {
	return &browser{id: id, binding: "session\x00" + s.ID, via: "link", expires: s.Expires}
}

// me is what the page learns of b: who it belongs to, and its request
// token.
func (m *Manager) me(b *browser) webMe {
	return webMe{User: b.id.Name(), UID: b.id.UID, Via: b.via, Expires: b.expires.UTC(), CSRF: m.web.signer.CSRFToken(b.binding),
		Formats: m.cfg.Formats, Format: m.cfg.Format}
}

// webAuthed authenticates a browser request, checks its request token when
// it changes something, and runs h. The identity never carries admin
// rights: the page acts on its user's own sessions only, so a forged
// request can never reach anyone else's.
func (m *Manager) webAuthed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := m.browser(r)
		if err == nil && r.Method != http.MethodGet && r.Method != http.MethodHead &&
			!m.web.signer.CheckCSRF(b.binding, r.Header.Get(csrfHeader)) {
			err = userErr(KindForbidden, "this request lacks the page's request token (a cross-site request, or a page from before you signed in again): reload the page")
		}
		if err != nil {
			m.log.Info("web request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "status", Status(err), "err", err)
			m.writeError(w, err)
			return
		}
		b.id.Admin = false
		h(w, r.WithContext(context.WithValue(r.Context(), browserKey{}, b)), b.id)
	}
}

type browserKey struct{}

// errSignedOut is what a browser without a valid session hears.
const errSignedOut = "you are not signed in: run `baicommit web` on a login node and open the link it prints"

// browser authenticates r: a trusted proxy's header first, then the cookie.
func (m *Manager) browser(r *http.Request) (*browser, error) {
	if h := m.cfg.WebProxyHeader; h != "" {
		if name := r.Header.Get(h); name != "" {
			return m.proxyBrowser(r, h, name)
		}
	}
	s, err := m.sessionCookie(r)
	if err != nil {
		return nil, err
	}
	id, err := m.identityByUID(s.UID)
	if err != nil {
		return nil, err
	}
	if id.Name() != s.Name {
		// The uid now belongs to someone else.
		return nil, userErr(KindUnauthorized, "%s", errSignedOut)
	}
	return sessionBrowser(id, s), nil
}

// proxyBrowser is the user an authenticating proxy names in header h.
// The proxy must prove itself twice: by its address, which every process
// on its host shares, and by the secret only it can read. Its user's
// request token is bound to a session of their own (a cookie the page
// gets from me), so that it changes like a signed-in user's and a token
// seen once is not good forever.
func (m *Manager) proxyBrowser(r *http.Request, h, name string) (*browser, error) {
	if !m.trustedProxy(r.RemoteAddr) {
		m.log.Warn("refused a proxy header from an untrusted address", "header", h, "remote", r.RemoteAddr)
		return nil, userErr(KindForbidden, "the %s header is accepted only from the site's authenticating proxy (web_trusted_proxies), not from %s", h, hostOf(r.RemoteAddr))
	}
	got := sha256.Sum256([]byte(r.Header.Get(m.cfg.WebProxySecretHeader)))
	if subtle.ConstantTimeCompare(got[:], m.web.proxySecret[:]) != 1 {
		m.log.Warn("refused a proxy header without the proxy's secret", "header", h, "remote", r.RemoteAddr)
		return nil, userErr(KindForbidden, "the %s header is accepted only from the site's authenticating proxy, which proves itself with its secret (web_proxy_secret_file); this request came from its address without it", h)
	}
	if _, err := strconv.Atoi(name); err == nil {
		return nil, userErr(KindForbidden, "the proxy must name the user, not a uid")
	}
	id, err := m.identityByName(name)
	if err != nil {
		return nil, err
	}
	b := &browser{id: id, via: "proxy"}
	if s, err := m.sessionCookie(r); err == nil && s.UID == id.UID && s.Name == id.Name() {
		b.binding = sessionBrowser(id, s).binding
	}
	return b, nil
}

// secure reports whether the page is served over HTTPS (here, or by a
// proxy in front whose address web_url gives).
func (m *Manager) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(m.cfg.WebURL, "https://")
}

// sessionCookie returns r's valid session: over HTTPS only from the
// __Host- cookie, which a sibling host or a plain-HTTP response cannot
// set; a session that signed out is no session.
func (m *Manager) sessionCookie(r *http.Request) (websession.Session, error) {
	name := cookieName
	if m.secure(r) {
		name = secureCookieName
	}
	c, err := r.Cookie(name)
	if err != nil {
		return websession.Session{}, userErr(KindUnauthorized, "%s", errSignedOut)
	}
	now := time.Now()
	s, err := m.web.signer.Decode(c.Value, now)
	switch {
	case err == nil && m.web.revoked.Revoked(s.ID, now):
		return websession.Session{}, userErr(KindUnauthorized, "you signed out of this web session: %s", errSignedOut)
	case err == nil:
		return s, nil
	case errors.Is(err, websession.ErrExpired):
		return s, userErr(KindUnauthorized, "your web session has expired: run `baicommit web` for a new login link")
	}
	m.log.Warn("refused a web session cookie", "remote", r.RemoteAddr, "err", err)
	return websession.Session{}, userErr(KindUnauthorized, "%s", errSignedOut)
}

func (m *Manager) trustedProxy(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	return slices.ContainsFunc(m.web.proxies, func(p netip.Prefix) bool { return p.Contains(a) })
}

func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// handleWebLink makes a login link for the MUNGE-authenticated caller. The
// link carries a MUNGE credential that the manager made for itself (only
// its own account can make one, and only it can decode one): munged ends
// it after web_link_ttl and refuses it a second time, so the link signs
// in once, with no state kept here.
func (m *Manager) handleWebLink(w http.ResponseWriter, r *http.Request, id *Identity) {
	ttl := m.cfg.WebLinkTTL.Duration
	self := m.web.self
	payload := loginMagic + "\n" + strconv.Itoa(id.UID)
	cred, err := m.munge.Encode(r.Context(), []byte(payload), munge.EncodeOptions{TTL: ttl, RestrictUID: &self})
	if err != nil {
		m.writeError(w, &Error{Kind: KindUnavailable, Err: err, Msg: "the manager cannot make a login link: " + err.Error()})
		return
	}
	m.log.Info("login link made", "user", id.Name(), "ttl", ttl.String())
	writeJSON(w, http.StatusCreated, api.WebLink{URL: loginLink(m.cfg.WebURL, cred), User: id.Name(),
		Expires: time.Now().Add(ttl).UTC().Truncate(time.Second)})
}

// loginLink is the link that signs in with cred: on webURL (with or
// without its /web/) when the site says where browsers reach the manager,
// else relative to the manager's URL. The credential goes in the fragment,
// which browsers send to no server and put in no Referer.
func loginLink(webURL, cred string) string {
	link := strings.TrimPrefix(webLogin, "/") + "#" + url.PathEscape(cred)
	if webURL == "" {
		return link
	}
	base := strings.TrimSuffix(strings.TrimSuffix(webURL, "/"), strings.TrimSuffix(webRoot, "/"))
	return base + "/" + link
}

// signInRequest is the body of POST /web/api/login.
type signInRequest struct {
	Link string `json:"link"`
}

// handleWebSignIn trades a login link for a new session cookie. The link
// is spent whatever happens next.
func (m *Manager) handleWebSignIn(w http.ResponseWriter, r *http.Request) {
	var req signInRequest
	if err := httperr.DecodeJSON(r.Body, maxRequestBody, &req); err != nil {
		m.writeError(w, err)
		return
	}
	id, err := m.redeemLink(r.Context(), req.Link)
	if err != nil {
		m.log.Info("web sign-in refused", "remote", r.RemoteAddr, "status", Status(err), "err", err)
		m.writeError(w, err)
		return
	}
	s := websession.New(id.UID, id.Name(), m.cfg.WebSessionTTL.Duration, time.Now())
	m.setCookie(w, r, m.web.signer.Encode(s), s.Expires)
	m.log.Info("web sign-in", "user", id.Name(), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, m.me(sessionBrowser(id, s)))
}

// redeemLink checks a login link's credential and returns who it signs
// in.
func (m *Manager) redeemLink(ctx context.Context, link string) (*Identity, error) {
	cred, err := url.PathUnescape(strings.TrimPrefix(strings.TrimSpace(link), "#"))
	if err != nil || cred == "" {
		return nil, userErr(KindUnauthorized, "this is not a baicommit login link: run `baicommit web` and open the link it prints")
	}
	dc, err := m.munge.Decode(ctx, cred)
	var me *munge.Error
	switch {
	case err == nil:
	case munge.IsUnavailable(err):
		return nil, &Error{Kind: KindUnavailable, Err: err, Msg: "the manager cannot check login links now: " + err.Error()}
	case errors.As(err, &me) && me.Status == munge.StatusExpired:
		return nil, &Error{Kind: KindUnauthorized, Err: err, Msg: fmt.Sprintf("this login link has expired (links last %s): run `baicommit web` again for a new one", m.cfg.WebLinkTTL.Duration)}
	case errors.As(err, &me) && me.Status == munge.StatusReplayed:
		return nil, &Error{Kind: KindUnauthorized, Err: err, Msg: "this login link was used already (each link signs in once): run `baicommit web` again for a new one"}
	default:
		return nil, &Error{Kind: KindUnauthorized, Err: err, Msg: "this is not a valid baicommit login link (" + err.Error() + "): run `baicommit web` and open the link it prints"}
	}
	magic, who, _ := strings.Cut(string(dc.Payload), "\n")
	if dc.UID != m.web.self || magic != loginMagic {
		m.log.Warn("refused a login link the manager did not make", "credential_uid", dc.UID)
		return nil, userErr(KindUnauthorized, "this is not a login link of this site: run `baicommit web` and open the link it prints")
	}
	uid, err := strconv.Atoi(who)
	if err != nil {
		return nil, userErr(KindUnauthorized, "this login link names no user")
	}
	return m.identityByUID(uid)
}

// handleWebSignOut ends the browser's session: its cookie is cleared and
// the session revoked, so that a copy of the cookie works no more.
func (m *Manager) handleWebSignOut(w http.ResponseWriter, r *http.Request) {
	if s, err := m.sessionCookie(r); err == nil {
		if err := m.web.revoked.Revoke(s, time.Now()); err != nil {
			m.writeError(w, err)
			return
		}
		m.log.Info("web sign-out", "user", s.Name, "remote", r.RemoteAddr)
	}
	m.setCookie(w, r, "", time.Unix(1, 0))
	w.WriteHeader(http.StatusNoContent)
}

// setCookie sets (or, with a past expiry, clears) the session cookie.
func (m *Manager) setCookie(w http.ResponseWriter, r *http.Request, value string, expires time.Time) {
	secure := m.secure(r)
	name := cookieName
	if secure {
		name = secureCookieName
	}
	c := &http.Cookie{Name: name, Value: value, Path: "/", Expires: expires, Secure: secure,
		HttpOnly: true, SameSite: http.SameSiteStrictMode}
	if value == "" {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// webMe is who the page belongs to, and its request token.
type webMe struct {
	User    string    `json:"user"`
	UID     int       `json:"uid"`
	Via     string    `json:"via"`
	Expires time.Time `json:"expires,omitzero"`
	CSRF    string    `json:"csrf_token"`
	// Formats are the formats the Commit dialog offers, Format the one it
	// starts with (empty: each node's own default).
	Formats []string `json:"formats"`
	Format  string   `json:"format,omitempty"`
}

// handleWebMe says who the page belongs to. A proxy's user without a
// session of their own gets one here: the page asks this first.
func (m *Manager) handleWebMe(w http.ResponseWriter, r *http.Request, _ *Identity) {
	b := r.Context().Value(browserKey{}).(*browser)
	if b.binding == "" {
		s := websession.New(b.id.UID, b.id.Name(), m.cfg.WebSessionTTL.Duration, time.Now())
		m.setCookie(w, r, m.web.signer.Encode(s), s.Expires)
		b.binding = sessionBrowser(b.id, s).binding
	}
	writeJSON(w, http.StatusOK, m.me(b))
}

// checkWebPush refuses a push asked for through the web page to a
// registry the site did not list: a page's requests are a browser's, and
// a browser can be made to send what its user did not mean.
func (m *Manager) checkWebPush(r *http.Request, p *api.PushRequest) error {
	if p == nil {
		return nil
	}
	if _, fromPage := r.Context().Value(browserKey{}).(*browser); !fromPage {
		return nil
	}
	named, err := reference.ParseNormalizedNamed(p.Ref)
	if err != nil {
		return userErr(KindInvalid, "push: %q is not an image reference: %v", p.Ref, err)
	}
	host := reference.Domain(named)
	allowed := m.cfg.WebPushRegistries
	if slices.Contains(allowed, "*") || slices.Contains(allowed, host) {
		return nil
	}
	if len(allowed) == 0 {
		return userErr(KindForbidden, "the web page pushes to no registry on this site: push with `baicommit commit --push` or `baicommit push`")
	}
	return userErr(KindForbidden, "the web page pushes only to this site's registries (%s), not to %s: push with `baicommit commit --push` or `baicommit push`", strings.Join(allowed, ", "), host)
}
