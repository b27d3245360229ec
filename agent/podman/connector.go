package podman

import (
	"context"
	"errors"
	"fmt"
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
	// RunDir holds one 0700 directory per user for private sockets.
	RunDir string
	// ServiceIdle is how long a transient service lingers without requests.
	ServiceIdle time.Duration
	// Podman is the podman binary to start services with.
	Podman string
	Log    *slog.Logger

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
// that the server runs as u, so a socket path the user pointed elsewhere
// cannot lead the agent into another user's Podman.
func (c *Connector) Connect(ctx context.Context, u *identity.User) (*Service, error) {
	std := StandardSocket(u.UID)
	svc, err := c.connect(ctx, u, std)
	if err == nil {
		c.Log.Info("using the user's podman socket", "user", u.Name, "socket", std)
		return svc, nil
	}
	if errors.Is(err, errWrongServer) {
		c.Log.Warn("refused a podman socket served by another user", "user", u.Name, "socket", std, "err", err)
	}
	sock := c.privateSocket(u.UID)
	if svc, err := c.connect(ctx, u, sock); err == nil {
		return svc, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Another request may have started it while we waited for the lock.
	if svc, err := c.connect(ctx, u, sock); err == nil {
		return svc, nil
	}
	if err := c.start(ctx, u, sock); err != nil {
		return nil, err
	}
	return c.connect(ctx, u, sock)
}

func (c *Connector) connect(ctx context.Context, u *identity.User, sock string) (*Service, error) {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) { return dialAs(ctx, sock, u.UID) }
	probe, err := dial(ctx, "", "")
	if err != nil {
		return nil, err
	}
	probe.Close()
	// The connection outlives the request that made it (a queued task
	// uses it later); each call brings its own deadline (Service.call).
	conn, err := bindings.NewConnection(context.WithoutCancel(ctx), "unix://"+sock)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, sock, err)
	}
	client, err := bindings.GetClient(conn)
	if err != nil {
		return nil, err
	}
	if t, ok := client.Client.Transport.(*http.Transport); ok {
		// From here on every connection is checked, not just the probe.
		t.DialContext = dial
		t.CloseIdleConnections()
	}
	return &Service{conn: conn, socket: sock}, nil
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
func (c *Connector) start(ctx context.Context, u *identity.User, sock string) error {
	dir := filepath.Dir(sock)
	if err := os.MkdirAll(c.RunDir, 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	// The directory is root's creation, handed to the user: remove any
	// previous one (it might have been tampered with) and make it fresh.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	// The log is created while the directory is still root's, so the
	// user cannot have put anything in its place.
	logf, err := os.OpenFile(filepath.Join(dir, "service.log"), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer logf.Close()
	if err := logf.Chown(u.UID, u.GID); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := os.Chown(dir, u.UID, u.GID); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	idle := int(c.ServiceIdle.Seconds())
	cmd := exec.Command(c.Podman, "system", "service", "--time="+strconv.Itoa(idle), "unix://"+sock)
	cmd.Dir = "/"
	cmd.Env = runas.Env(u)
	cmd.SysProcAttr = runas.Credentials(u)
	// Its own session: signals meant for the agent do not stop a service
	// that other freezes of this user may still be using.
	cmd.SysProcAttr.Setsid = true
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: start podman system service as %s: %v", ErrUnavailable, u.Name, err)
	}
	c.Log.Info("started transient podman service", "user", u.Name, "uid", u.UID, "socket", sock, "pid", cmd.Process.Pid)
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
			if conn, err := dialAs(ctx, sock, u.UID); err == nil {
				conn.Close()
				go func() {
					err := <-exited
					c.Log.Info("transient podman service exited", "user", u.Name, "err", err)
				}()
				return nil
			}
		}
	}
}
