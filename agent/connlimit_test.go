package agent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
)

// serveEcho accepts on ln and writes "ok" on every connection it gets.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("ok"))
		// Held open, as an idle client would hold it.
		go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
	}
}

// served reports whether the listener took c (it writes "ok") or closed it.
func served(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2)
	_, err := io.ReadFull(c, b)
	return err == nil
}

// One caller beyond its limit is turned away at once; others are not, and
// a closed connection gives its place back.
func TestLimitListener(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	ll := newLimitListener(tcp, 2, log)
	ll.perAddr = 2
	defer ll.Close()
	go serveEcho(ll)
	var conns []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", tcp.Addr().String())
		assert.NilError(t, err)
		defer c.Close()
		assert.Check(t, is.Equal(served(t, c), i < 2), "connection %d", i)
		conns = append(conns, c)
	}
	conns[0].Close()
	// The release happens when the server side closes its end.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", tcp.Addr().String())
		assert.NilError(t, err)
		ok := served(t, c)
		c.Close()
		if ok || time.Now().After(deadline) {
			assert.Check(t, ok, "a closed connection's place was not given back")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	// On a unix socket the limit is the peer's uid's; root's are not counted.
	sock := filepath.Join(t.TempDir(), "s")
	ux, err := net.Listen("unix", sock)
	assert.NilError(t, err)
	ul := newLimitListener(ux, 1, log)
	defer ul.Close()
	go serveEcho(ul)
	root := isRoot()
	for i := range 2 {
		c, err := net.Dial("unix", sock)
		assert.NilError(t, err)
		defer c.Close()
		assert.Check(t, is.Equal(served(t, c), root || i == 0), "unix connection %d (root: %v)", i, root)
	}
}

func isRoot() bool { return os.Geteuid() == 0 }

// A push password that reached the TCP listener in clear is refused: it
// must travel over TLS.
func TestCredsOnlyOverTLS(t *testing.T) {
	ta := newTestAgent(t, testConfig(t), newFakePodmans(), &fakeHelpers{})
	body := `{"container": "c", "push": {"ref": "r.example/a:b", "creds": "u:p"}}`
	req := httptest.NewRequest(http.MethodPost, api.RouteFreezes, strings.NewReader(body))
	req = req.WithContext(context.WithValue(req.Context(), tcpKey{}, true))
	w := httptest.NewRecorder()
	ta.handleFreeze(w, req)
	assert.Check(t, is.Equal(w.Code, http.StatusBadRequest))
	assert.Check(t, is.Contains(w.Body.String(), "credentials travel only over TLS"))
	assert.Check(t, !strings.Contains(w.Body.String(), "u:p"))
}
