// Package websession signs the session cookies and request tokens of
// baicommit-manager's web page. The manager keeps no state, so a session is
// a cookie that carries who signed in and until when, with an HMAC that any
// replica holding the same key can check. Each sign-in draws a fresh random
// session id: a cookie planted before sign-in is replaced, never adopted
// (no session fixation), and the cross-site request forgery token is derived
// from that id, so it changes with every sign-in too.
package websession

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// MinKeySize is the shortest key a Signer accepts.
const MinKeySize = 32

// Domain-separation prefixes: a MAC made for one purpose never passes as
// another's.
const (
	sessionDomain = "baicommit-web-session/1\x00"
	csrfDomain    = "baicommit-web-csrf/1\x00"
)

// Errors of Decode, for callers that word them for users.
var (
	ErrMalformed = errors.New("malformed session cookie")
	ErrForged    = errors.New("session cookie not signed by this site")
	ErrExpired   = errors.New("session expired")
)

// Session is one signed-in browser.
type Session struct {
	UID  int    `json:"u"`
	Name string `json:"n"`
	// ID is random and new at every sign-in.
	ID string `json:"s"`
	// Expires is when the cookie stops being accepted (Unix seconds on
	// the wire).
	Expires time.Time `json:"-"`
}

type wire struct {
	Session
	Exp int64 `json:"e"`
}

// Signer makes and checks cookies and request tokens with one key.
type Signer struct {
	key []byte
}

// NewSigner returns a Signer for key, which must hold at least MinKeySize
// bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("web session key has %d bytes, want at least %d", len(key), MinKeySize)
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// RandomKey returns a new key, for a manager that has no key file: its
// sessions end when it restarts and no other replica accepts them.
func RandomKey() []byte {
	k := make([]byte, MinKeySize)
	_, _ = rand.Read(k) // never fails (crypto/rand)
	return k
}

// LoadKey reads a key file. It refuses a file that others may read: the
// key lets its holder sign in as anyone.
func LoadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("web key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("web key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("web key file %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("web key file %s is mode %04o: make it readable by the manager's account only (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("web key file %s: %w", path, err)
	}
	key := []byte(strings.TrimSpace(string(b)))
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("web key file %s holds %d bytes, want at least %d (e.g. head -c 48 /dev/urandom | base64 > %s)", path, len(key), MinKeySize, path)
	}
	return key, nil
}

// New starts a session for uid and name that lasts ttl from now.
func New(uid int, name string, ttl time.Duration, now time.Time) Session {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return Session{UID: uid, Name: name, ID: base64.RawURLEncoding.EncodeToString(id),
		Expires: now.Add(ttl).Truncate(time.Second)}
}

// Encode returns the cookie value of s.
func (sg *Signer) Encode(s Session) string {
	b, _ := json.Marshal(wire{Session: s, Exp: s.Expires.Unix()}) // plain fields: cannot fail
	p := base64.RawURLEncoding.EncodeToString(b)
	return p + "." + base64.RawURLEncoding.EncodeToString(sg.mac(sessionDomain, p))
}

// Decode checks a cookie value and returns its session.
func (sg *Signer) Decode(v string, now time.Time) (Session, error) {
	p, m, ok := strings.Cut(v, ".")
	if !ok || len(v) > 4096 {
		return Session{}, ErrMalformed
	}
	mac, err := base64.RawURLEncoding.DecodeString(m)
	if err != nil {
		return Session{}, ErrMalformed
	}
	if !hmac.Equal(mac, sg.mac(sessionDomain, p)) {
		return Session{}, ErrForged
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return Session{}, ErrMalformed
	}
	var w wire
	if err := json.Unmarshal(b, &w); err != nil || w.ID == "" || w.Name == "" {
		return Session{}, ErrMalformed
	}
	w.Session.Expires = time.Unix(w.Exp, 0)
	if !now.Before(w.Session.Expires) {
		return Session{}, ErrExpired
	}
	return w.Session, nil
}

// CSRFToken returns the request token for binding: a session's ID, or
// whatever else names who the page belongs to (a proxy's user).
func (sg *Signer) CSRFToken(binding string) string {
	return base64.RawURLEncoding.EncodeToString(sg.mac(csrfDomain, binding))
}

// CheckCSRF reports whether token is binding's request token.
func (sg *Signer) CheckCSRF(binding, token string) bool {
	got, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil && binding != "" && hmac.Equal(got, sg.mac(csrfDomain, binding))
}

func (sg *Signer) mac(domain, msg string) []byte {
	h := hmac.New(sha256.New, sg.key)
	h.Write([]byte(domain))
	h.Write([]byte(msg))
	return h.Sum(nil)
}
