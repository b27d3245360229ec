// Package reqauth signs the requests baicommit-manager relays to agents
// with a key the two agreed once, instead of a MUNGE credential for each
// request, in the way Slurm 23.11's auth/slurm replaced a MUNGE credential
// per message with a shared key. munged serves Slurm too: at 10,000 nodes,
// three MUNGE operations per agent request would stall it.
//
// Opening a session: the manager sends an ephemeral X25519 public key (a
// Hello) in a request that carries its MUNGE credential, bound to that
// body and to the agent's node name (the audience). Package identity
// checks the credential; the agent (Server.Accept) answers with its own
// ephemeral public key, a session id, the session's lifetime and a proof
// that it derived the same key (a Welcome). Both derive the session key
// with HKDF from the X25519 secret, the audience, the id and both public
// keys: someone who sees the exchange learns nothing of it, and someone who
// replays the Hello gets a session whose key they cannot compute.
//
// Every request is then signed (Session.Sign) with HMAC-SHA-256 over the
// audience, the session, a sequence number, the time, the method, the
// request target, the uid the manager acts for and the body's SHA-256. The
// agent (Server.Verify) checks all of it from the headers alone, before it
// reads any of the body, then refuses a sequence number it has seen (a
// sliding window, as IPsec and WireGuard keep) and a time more than Skew
// away from its own clock. A captured request is therefore good nowhere
// else (another agent knows neither the session nor the audience) and
// never twice.
//
// Sessions live in memory only. An agent that restarts knows none and
// answers with a challenge (Challenge); the manager's Client then opens a
// new session and sends the request again, signed anew, so that a restart
// costs one more round trip and two MUNGE operations, never a failed
// request.
package reqauth

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Route is the agent route on which the manager opens a session: POST a
// Hello, proved with the manager's MUNGE credential; the answer is a
// Welcome.
const Route = "/v1/manager-sessions"

// Scheme is the Authorization scheme of a signed request:
//
//	Authorization: Baicommit-Session s=ID,n=SEQ,t=UNIX,a=UID,b=BODYSHA256,m=MAC
const Scheme = "Baicommit-Session"

// version starts every derived key and signed string, so that nothing
// else this package (or another) computes passes for one.
const version = "baicommit-reqauth/1"

// Errors of Verify. A server answers all of them with 401; only
// ErrNoSession asks the manager for a new session (Challenge).
var (
	ErrNoSignature  = errors.New("the request is not signed with a manager session")
	ErrMalformed    = errors.New("malformed session signature")
	ErrNoSession    = errors.New("no such manager session (the agent restarted or the session ended): open a new one")
	ErrStale        = errors.New("the signed time is too far from this host's clock (are the clocks in sync?)")
	ErrBadSignature = errors.New("the request's signature does not match it")
	ErrReplayed     = errors.New("the request was seen before (replayed)")
	ErrBody         = errors.New("the request's body is not the one signed")
)

// Hello is what the manager sends to open a session.
type Hello struct {
	// PublicKey is the manager's ephemeral X25519 public key.
	PublicKey []byte `json:"public_key"`
}

// Welcome is the agent's answer to a Hello.
type Welcome struct {
	// Session names the session in every signed request.
	Session string `json:"session"`
	// PublicKey is the agent's ephemeral X25519 public key.
	PublicKey []byte `json:"public_key"`
	// TTLSeconds is how long the agent keeps the session. The manager
	// counts it from when it sent the Hello, so clocks need not agree.
	TTLSeconds int64 `json:"ttl_seconds"`
	// Confirm proves the agent derived the same key: HMAC of the session
	// id under it.
	Confirm []byte `json:"confirm"`
}

// Claims are what a verified signature says.
type Claims struct {
	Session string
	// As is the uid the manager acts for, in decimal.
	As string
	// BodySHA256 is the signed hex SHA-256 of the body, which the caller
	// checks once it has read the body (CheckBody).
	BodySHA256 string
}

// CheckBody reports whether body is the one that was signed.
func (c *Claims) CheckBody(body []byte) error {
	sum := sha256.Sum256(body)
	if !hmac.Equal([]byte(hex.EncodeToString(sum[:])), []byte(c.BodySHA256)) {
		return ErrBody
	}
	return nil
}

// Challenge sets the header that asks the manager to open a new session:
// the answer to a request signed with a session the agent does not know.
func Challenge(h http.Header) {
	h.Set("WWW-Authenticate", Scheme+` error="no_session"`)
}

// Challenged reports whether an answer is the challenge of an agent that
// knows no such session: opening a new one and signing the request again
// will do.
func Challenged(resp *http.Response) bool {
	if resp.StatusCode != http.StatusUnauthorized {
		return false
	}
	for _, v := range resp.Header.Values("WWW-Authenticate") {
		scheme, params, _ := strings.Cut(v, " ")
		if strings.EqualFold(scheme, Scheme) && strings.Contains(params, `error="no_session"`) {
			return true
		}
	}
	return false
}

// curve is the key agreement of every session.
var curve = ecdh.X25519()

// sessionKey derives a session's key from the X25519 secret and the
// exchange: whoever changes the audience, the id or a public key gets
// another key.
func sessionKey(secret []byte, audience, id string, managerPub, agentPub []byte) ([]byte, error) {
	info := strings.Join([]string{version, audience, id, hex.EncodeToString(managerPub), hex.EncodeToString(agentPub)}, "\n")
	return hkdf.Key(sha256.New, secret, nil, info, 32)
}

// confirmation is the Welcome's proof of the key.
func confirmation(key []byte, id string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(version + "\nconfirm\n" + id))
	return h.Sum(nil)
}

// newID is a random session id.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// signed is one request's signature fields.
type signed struct {
	session string
	seq     uint64
	unix    int64
	as      string
	body    string // hex SHA-256
	mac     []byte
}

// mac computes the signature of a request under key.
func (s *signed) compute(key []byte, audience, method, target string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(strings.Join([]string{version, audience, s.session,
		strconv.FormatUint(s.seq, 10), strconv.FormatInt(s.unix, 10),
		method, target, s.as, s.body}, "\n")))
	return h.Sum(nil)
}

func (s *signed) header() string {
	return fmt.Sprintf("%s s=%s,n=%d,t=%d,a=%s,b=%s,m=%s", Scheme, s.session, s.seq, s.unix, s.as, s.body,
		base64.RawURLEncoding.EncodeToString(s.mac))
}

// parseHeader reads an Authorization header of Scheme. Every field must
// be there exactly once and look as it should: the header comes from
// anyone who reaches the port.
func parseHeader(v string) (*signed, error) {
	scheme, params, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, Scheme) {
		return nil, ErrNoSignature
	}
	if len(params) > 512 {
		return nil, ErrMalformed
	}
	var s signed
	seen := map[string]bool{}
	for _, kv := range strings.Split(params, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || seen[k] {
			return nil, ErrMalformed
		}
		seen[k] = true
		var err error
		switch k {
		case "s":
			if len(val) != 32 || !isHex(val) {
				return nil, ErrMalformed
			}
			s.session = val
		case "n":
			s.seq, err = strconv.ParseUint(val, 10, 64)
			if s.seq == 0 {
				err = ErrMalformed
			}
		case "t":
			s.unix, err = strconv.ParseInt(val, 10, 64)
		case "a":
			var uid int
			uid, err = strconv.Atoi(val)
			if uid < 0 || strconv.Itoa(uid) != val {
				err = ErrMalformed
			}
			s.as = val
		case "b":
			if len(val) != 64 || !isHex(val) {
				return nil, ErrMalformed
			}
			s.body = val
		case "m":
			s.mac, err = base64.RawURLEncoding.DecodeString(val)
			if len(s.mac) != sha256.Size {
				err = ErrMalformed
			}
		default:
			return nil, ErrMalformed
		}
		if err != nil {
			return nil, ErrMalformed
		}
	}
	if len(seen) != 6 {
		return nil, ErrMalformed
	}
	return &s, nil
}

func isHex(s string) bool {
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// bodySum is the hex SHA-256 of body.
func bodySum(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// Defaults of the options.
const (
	DefaultTTL         = time.Hour
	DefaultSkew        = time.Minute
	DefaultMaxSessions = 64
)

// clock returns now, or time.Now.
func clock(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}
