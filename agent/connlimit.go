package agent

import (
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/baicommit/baicommit/internal/identity"
)

// maxTCPConnsPerAddr bounds the connections one address holds open on the
// TCP listener, which answers only the manager (a few replicas, each with
// a bounded pool of connections to an agent).
const maxTCPConnsPerAddr = 256

// limitListener closes, as soon as it is accepted, a connection beyond
// the limit of the uid (unix socket, by its peer credentials) or address
// (TCP) it comes from: one user holding many connections open, idle or
// sending nothing, must not use up what the agent can serve (the epilog,
// everyone else). Root's connections are not counted.
type limitListener struct {
	net.Listener
	perKey, perAddr int
	log             *slog.Logger

	mu   sync.Mutex
	open map[string]int
	// warned rate-limits the log: one line per key and minute.
	warned map[string]time.Time
}

func newLimitListener(ln net.Listener, perKey int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, perKey: perKey, perAddr: maxTCPConnsPerAddr, log: log,
		open: map[string]int{}, warned: map[string]time.Time{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, limit := l.keyOf(c)
		if key == "" {
			return c, nil
		}
		l.mu.Lock()
		if l.open[key] >= limit {
			now := time.Now()
			warn := now.Sub(l.warned[key]) > time.Minute
			if warn {
				l.warned[key] = now
			}
			l.mu.Unlock()
			c.Close()
			if warn {
				l.log.Warn("refused a connection: too many open from one caller", "caller", key, "limit", limit)
			}
			continue
		}
		l.open[key]++
		l.mu.Unlock()
		return &countedConn{Conn: c, release: func() { l.release(key) }}, nil
	}
}

// keyOf says whom c counts against, and their limit ("" for root).
func (l *limitListener) keyOf(c net.Conn) (string, int) {
	switch c := c.(type) {
	case *net.UnixConn:
		cred, err := identity.PeerCred(c)
		if err != nil {
			return "unknown peer", l.perKey
		}
		if cred.Uid == 0 {
			return "", 0
		}
		return "uid " + strconv.Itoa(int(cred.Uid)), l.perKey
	case *net.TCPConn:
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			return "address " + a.IP.String(), l.perAddr
		}
	}
	return "unknown peer", l.perKey
}

func (l *limitListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

// countedConn gives its place back when closed (once).
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// NetConn is the connection underneath, whose kind (unix or TCP) says how
// its caller proves who they are.
func (c *countedConn) NetConn() net.Conn { return c.Conn }

// underlying unwraps c to the connection the kernel made.
func underlying(c net.Conn) net.Conn {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		next := u.NetConn()
		if next == nil || next == c {
			return c
		}
		c = next
	}
}
