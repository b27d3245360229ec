package podman

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/containers/podman/v5/pkg/bindings"

	"github.com/baicommit/baicommit/agent/runas"
	"github.com/baicommit/baicommit/internal/identity"
)

// Connector hands out connections to users' Podman services.
type Connector struct {
	// RunDir holds one directory per user for the private sockets of the
	// services the agent starts. They are root's (0700): the user cannot
	// reach that service and start containers through it outside their
	// jobs' limits; only the agent talks to it.
	RunDir string
	// ServiceIdle is how long a transient service lingers without requests.
	ServiceIdle time.Duration
	// Podman is the podman binary to start services with.
	Podman string
	// Cgroups places the services where the user's own processes belong.
	Cgroups runas.Cgroups
	Log     *slog.Logger

	mu sync.Mutex // serialises starting services
}

// errWrongServer means a socket is served by another user than expected.
var errWrongServer = errors.New("podman socket of another user")

// ErrUnavailable means the user's Podman could not be reached or started.
var ErrUnavailable = errors.New("podman unavailable")

// StandardSocket is where a user's socket-activated Podman listens.
func StandardSocket(uid int) string {
	return fmt.Sprintf("/run/user/%d/podman/podman.sock", uid)
}

func (c *Connector) privateSocket(uid int) string {
	return filepath.Join(c.RunDir, strconv.Itoa(uid), "podman.sock")
}

// Connect returns u's Podman service. Every connection it makes checks
// who serves it: u at u's standard socket, so a socket path the user
// pointed elsewhere cannot lead the agent into another user's Podman; the
// agent itself at a private socket (the agent made it, in a directory only
// root can enter, and handed it to the service it started for u).
func (c *Connector) Connect(ctx context.Context, u *identity.User) (*Service, error) {
	std := StandardSocket(u.UID)
	svc, err := c.connect(ctx, u, std, u.UID)
	if err == nil {
		c.Log.Info("using the user's podman socket", "user", u.Name, "socket", std)
		return svc, nil
	}
	if errors.Is(err, errWrongServer) {
		c.Log.Warn("refused a podman socket served by another user", "user", u.Name, "socket", std, "err", err)
	}
	sock := c.privateSocket(u.UID)
	if svc, err := c.connect(ctx, u, sock, 0); err == nil {
		return svc, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Another request may have started it while we waited for the lock.
	if svc, err := c.connect(ctx, u, sock, 0); err == nil {
		return svc, nil
	}
	if err := c.start(ctx, u, sock); err != nil {
		return nil, err
	}
	return c.connect(ctx, u, sock, 0)
}

// MaxAnswer bounds what the agent reads of one answer of a user's Podman:
// the user runs it (or whatever answers in its place), and a list of
// containers or an inspect is far smaller.
const MaxAnswer = 16 << 20

// connect connects to the Podman service at sock, served by uid server.
func (c *Connector) connect(ctx context.Context, u *identity.User, sock string, server int) (*Service, error) {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) { return dialAs(ctx, sock, server) }
	probe, err := dial(ctx, "", "")
	if err != nil {
		return nil, err
	}
	probe.Close()
	// The connection outlives the request that made it (a queued task
	// uses it later): it keeps only ctx's values, and each call brings
	// its own deadline (Service.call). Its first ping has ctx's.
	conn, err := bindings.NewConnection(pingContext{context.WithoutCancel(ctx), ctx}, "unix://"+sock)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, sock, err)
	}
	client, err := bindings.GetClient(conn)
	if err != nil {
		return nil, err
	}
	t, ok := client.Client.Transport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("%w: unexpected transport %T of the Podman bindings", ErrUnavailable, client.Client.Transport)
	}
	// From here on every connection is checked, not just the probe, and
	// every answer is bounded.
	t.DialContext = dial
	t.MaxResponseHeaderBytes = 1 << 20
	t.CloseIdleConnections()
	client.Client.Transport = boundedTransport{t}
	return &Service{conn: conn, socket: sock, dial: dial}, nil
}

// rawConnection is a connection of the bindings with their own transport
// (which hijacking needs), dialled and checked like every other; closing
// it closes every connection made through it, a hijacked one too.
func (s *Service) rawConnection(ctx context.Context) (context.Context, func(), error) {
	conn, err := bindings.NewConnection(pingContext{context.WithoutCancel(ctx), ctx}, "unix://"+s.socket)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, s.socket, err)
	}
	client, err := bindings.GetClient(conn)
	if err != nil {
		return nil, nil, err
	}
	t, ok := client.Client.Transport.(*http.Transport)
	if !ok {
		return nil, nil, fmt.Errorf("%w: unexpected transport %T of the Podman bindings", ErrUnavailable, client.Client.Transport)
	}
	var mu sync.Mutex
	var conns []net.Conn
	closed := false
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := s.dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return nil, net.ErrClosed
		}
		conns = append(conns, c)
		return c, nil
	}
	t.MaxResponseHeaderBytes = 1 << 20
	t.CloseIdleConnections()
	return conn, func() {
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
	}, nil
}

// pingContext carries the values of one context and the deadline and
// cancellation of another: the connection's ping waits no longer than the
// request that makes it, the connection keeps nothing of it.
type pingContext struct {
	context.Context // values (and, once the ping is over, nothing else)
	deadline        context.Context
}

func (p pingContext) Deadline() (time.Time, bool) { return p.deadline.Deadline() }
func (p pingContext) Done() <-chan struct{}       { return p.deadline.Done() }
func (p pingContext) Err() error                  { return p.deadline.Err() }

// boundedTransport cuts every answer at MaxAnswer bytes.
type boundedTransport struct{ http.RoundTripper }

func (b boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.RoundTripper.RoundTrip(req)
	if err == nil {
		resp.Body = &boundedBody{ReadCloser: resp.Body, left: MaxAnswer}
	}
	return resp, err
}

// errAnswerTooLarge ends the reading of an answer larger than MaxAnswer.
var errAnswerTooLarge = fmt.Errorf("the Podman service's answer is larger than %d MiB", MaxAnswer>>20)

type boundedBody struct {
	io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errAnswerTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// dialAs connects to sock and checks that the listening process runs as
// uid (SO_PEERCRED), which no symlink trick can fake.
func dialAs(ctx context.Context, sock string, uid int) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, err
	}
	cred, err := identity.PeerCred(conn.(*net.UnixConn))
	if err != nil {
		conn.Close()
		return nil, err
	}
	if int(cred.Uid) != uid {
		conn.Close()
		return nil, fmt.Errorf("%w: %s is served by uid %d, not by uid %d", errWrongServer, sock, cred.Uid, uid)
	}
	return conn, nil
}

// start runs `podman system service` as u on sock and waits until it
// answers. The service exits by itself after ServiceIdle without requests.
//
// The socket is the agent's: made in a directory only root can enter and
// handed to the service by socket activation (LISTEN_FDS), so the user
// cannot talk to that service, which runs outside their job. The service
// is placed in the user's cgroup (Cgroups) before podman runs: a shell
// waits for the agent's word on a pipe, then becomes podman.
func (c *Connector) start(ctx context.Context, u *identity.User, sock string) error {
	dir := filepath.Dir(sock)
	if err := os.MkdirAll(c.RunDir, 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	// Remove any previous directory (an older agent gave it to the user,
	// who might have put anything in it) and make a fresh one of root's.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "service.log"), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer logf.Close()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("%w: listen on %s: %v", ErrUnavailable, sock, err)
	}
	// The service keeps the socket; the agent's copy only hands it over.
	ln.SetUnlinkOnClose(false)
	lnFile, err := ln.File()
	ln.Close()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer lnFile.Close()
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer gateR.Close()
	defer gateW.Close()

	idle := int(c.ServiceIdle.Seconds())
	// fd 3 is the socket, fd 4 the gate. LISTEN_PID is the shell's pid,
	// which exec keeps for podman.
	const script = `read -r _ <&4 || exit 1; exec 4<&-; LISTEN_PID=$$ exec "$0" system service --time="$1"`
	cmd := exec.Command("/bin/sh", "-c", script, c.Podman, strconv.Itoa(idle))
	cmd.Dir = "/"
	cmd.Env = append(runas.Env(u), "LISTEN_FDS=1", "LISTEN_FDNAMES=podman.sock",
		// Names the service for admins (and tests): the agent's, for u.
		"BAICOMMIT_PODMAN_SOCKET="+sock)
	cmd.ExtraFiles = []*os.File{lnFile, gateR}
	cmd.SysProcAttr = runas.Credentials(u)
	// Its own session: signals meant for the agent do not stop a service
	// that other freezes of this user may still be using.
	cmd.SysProcAttr.Setsid = true
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: start podman system service as %s: %v", ErrUnavailable, u.Name, err)
	}
	lnFile.Close()
	gateR.Close()
	placed, perr := c.Cgroups.Place(cmd.Process.Pid, u)
	if perr != nil {
		c.Log.Warn("could not place the podman service in the user's cgroup", "user", u.Name, "err", perr)
	}
	_, _ = gateW.Write([]byte("go\n"))
	gateW.Close()
	c.Log.Info("started transient podman service", "user", u.Name, "uid", u.UID, "socket", sock, "pid", cmd.Process.Pid, "cgroups", placed)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("%w: podman system service for %s exited at once (%v); see %s/service.log", ErrUnavailable, u.Name, err, dir)
		case <-deadline.C:
			_ = cmd.Process.Kill()
			return fmt.Errorf("%w: podman system service for %s did not answer within 30s", ErrUnavailable, u.Name)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return ctx.Err()
		case <-tick.C:
			if c.answers(ctx, sock) {
				go func() {
					err := <-exited
					c.Log.Info("transient podman service exited", "user", u.Name, "err", err)
				}()
				return nil
			}
		}
	}
}

// answers reports whether the service at sock answers a ping: with socket
// activation the socket accepts connections before podman serves them.
func (c *Connector) answers(ctx context.Context, sock string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := dialAs(ctx, sock, 0)
	if err != nil {
		return false
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://d/_ping", nil)
	req.Close = true
	if err := req.Write(conn); err != nil {
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
