package reqauth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// ServerOptions tune a Server; zero values mean the defaults.
type ServerOptions struct {
	// TTL is how long a session lives (DefaultTTL).
	TTL time.Duration
	// Skew is how far a request's signed time may be from this host's
	// clock (DefaultSkew).
	Skew time.Duration
	// MaxSessions bounds the sessions kept (DefaultMaxSessions): one per
	// manager replica is needed, a few more while replicas restart. Past
	// it, the oldest is dropped (its manager opens another).
	MaxSessions int
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Server is an agent's side: the sessions managers opened with it, and
// the check of every signed request.
type Server struct {
	audience string
	ttl      time.Duration
	skew     time.Duration
	max      int
	now      func() time.Time

	mu       sync.Mutex
	sessions map[string]*serverSession
}

type serverSession struct {
	key     []byte
	created time.Time
	expires time.Time

	mu   sync.Mutex
	seen window
}

// NewServer returns the sessions of the agent whose node name is audience.
func NewServer(audience string, o ServerOptions) *Server {
	s := &Server{audience: audience, ttl: o.TTL, skew: o.Skew, max: o.MaxSessions, now: clock(o.Now),
		sessions: map[string]*serverSession{}}
	if s.ttl <= 0 {
		s.ttl = DefaultTTL
	}
	if s.skew <= 0 {
		s.skew = DefaultSkew
	}
	if s.max <= 0 {
		s.max = DefaultMaxSessions
	}
	return s
}

// maxHello bounds a Hello: a public key in JSON.
const maxHello = 1 << 10

// Accept opens a session for a Hello and returns the Welcome, as JSON. The
// caller has proved that hello comes from the manager (its MUNGE
// credential, bound to this body and to this agent's node name).
func (s *Server) Accept(hello []byte) ([]byte, error) {
	var h Hello
	dec := json.NewDecoder(bytes.NewReader(hello))
	dec.DisallowUnknownFields()
	if len(hello) > maxHello || dec.Decode(&h) != nil {
		return nil, fmt.Errorf("%w: the hello is not a public key in JSON", ErrMalformed)
	}
	peer, err := curve.NewPublicKey(h.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: the manager's public key: %v", ErrMalformed, err)
	}
	priv, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	secret, err := priv.ECDH(peer)
	if err != nil {
		// A low-order point: no secret to agree on.
		return nil, fmt.Errorf("%w: the manager's public key: %v", ErrMalformed, err)
	}
	id := newID()
	pub := priv.PublicKey().Bytes()
	key, err := sessionKey(secret, s.audience, id, h.PublicKey, pub)
	if err != nil {
		return nil, err
	}
	now := s.now()
	s.mu.Lock()
	s.makeRoom(now)
	s.sessions[id] = &serverSession{key: key, created: now, expires: now.Add(s.ttl)}
	s.mu.Unlock()
	return json.Marshal(Welcome{Session: id, PublicKey: pub, TTLSeconds: int64(s.ttl / time.Second), Confirm: confirmation(key, id)})
}

// makeRoom drops the sessions that ended, then the oldest while there are
// too many. Callers hold s.mu.
func (s *Server) makeRoom(now time.Time) {
	for id, ss := range s.sessions {
		if !now.Before(ss.expires) {
			delete(s.sessions, id)
		}
	}
	for len(s.sessions) >= s.max {
		var oldest string
		for id, ss := range s.sessions {
			if oldest == "" || ss.created.Before(s.sessions[oldest].created) {
				oldest = id
			}
		}
		delete(s.sessions, oldest)
	}
}

// Sessions is the number of sessions kept.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Verify checks r's signature from its headers alone, without reading its
// body: the session, the time, the signature over method, target, acting
// uid, audience and the body's hash, then that its sequence number is new.
// The caller reads the body afterwards and checks it with
// Claims.CheckBody.
func (s *Server) Verify(r *http.Request) (*Claims, error) {
	sg, err := parseHeader(r.Header.Get("Authorization"))
	if err != nil {
		return nil, err
	}
	now := s.now()
	s.mu.Lock()
	ss := s.sessions[sg.session]
	if ss != nil && !now.Before(ss.expires) {
		delete(s.sessions, sg.session)
		ss = nil
	}
	s.mu.Unlock()
	if ss == nil {
		return nil, ErrNoSession
	}
	if d := now.Sub(time.Unix(sg.unix, 0)); d > s.skew || d < -s.skew {
		return nil, ErrStale
	}
	if !hmac.Equal(sg.mac, sg.compute(ss.key, s.audience, r.Method, r.URL.RequestURI())) {
		return nil, ErrBadSignature
	}
	// Only a signature that holds may move the window: otherwise anyone
	// could push it past the manager's requests.
	ss.mu.Lock()
	fresh := ss.seen.accept(sg.seq)
	ss.mu.Unlock()
	if !fresh {
		return nil, ErrReplayed
	}
	return &Claims{Session: sg.session, As: sg.as, BodySHA256: sg.body}, nil
}
