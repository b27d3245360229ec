package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
)

// Listeners returns the sockets to serve: those named by listen
// (unix:///PATH or tcp://HOST:PORT), or else those systemd (or
// systemd-socket-activate) passed, in which case activated is true. Which
// kind a socket is decides how callers prove who they are: peer
// credentials on unix sockets, the manager's session signature on TCP.
func Listeners(listen []string) (lns []net.Listener, activated bool, err error) {
	if len(listen) > 0 {
		for _, addr := range listen {
			ln, err := listenOn(addr)
			if err != nil {
				for _, l := range lns {
					l.Close()
				}
				return nil, false, err
			}
			lns = append(lns, ln)
		}
		return lns, false, nil
	}
	lns, err = activation.Listeners()
	if err != nil {
		return nil, false, fmt.Errorf("socket activation: %w", err)
	}
	if len(lns) == 0 {
		return nil, false, errors.New("no socket: start me through baicommit-agent.socket or pass --listen unix:///PATH")
	}
	return lns, true, nil
}

func listenOn(addr string) (net.Listener, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: %w", addr, err)
	}
	switch {
	case u.Scheme == "tcp" && u.Host != "":
		return net.Listen("tcp", u.Host)
	case u.Scheme == "unix" && u.Path != "":
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, err
		}
		_ = os.Remove(u.Path)
		ln, err := net.Listen("unix", u.Path)
		if err != nil {
			return nil, err
		}
		// Everyone may connect: identity comes from SO_PEERCRED.
		if err := os.Chmod(u.Path, 0o666); err != nil {
			ln.Close()
			return nil, err
		}
		return ln, nil
	}
	return nil, fmt.Errorf("--listen %q: want unix:///path/to.sock or tcp://host:port", addr)
}

// Serve answers on lns until ctx ends or, when idleExit is positive, the
// agent has had nothing to do for that long (systemd keeps the sockets
// and starts the agent again on the next connection). It then stops
// accepting and waits at most 10 s for requests in flight.
func (a *Agent) Serve(ctx context.Context, lns []net.Listener, idleExit time.Duration) error {
	srv := NewServer(a)
	var tlsConfig *tls.Config
	if a.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.TLSCert, a.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("tls_cert/tls_key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		_, isTCP := ln.Addr().(*net.TCPAddr)
		ln = newLimitListener(ln, a.cfg.MaxConnectionsPerUser, a.log)
		if isTCP && tlsConfig != nil {
			// Outside the limit, so that the server sees TLS connections.
			ln = tls.NewListener(ln, tlsConfig)
		}
		go func() { errc <- srv.Serve(ln) }()
	}
	var idle <-chan time.Time
	if idleExit > 0 {
		t := time.NewTicker(min(idleExit/4, time.Second))
		defer t.Stop()
		idle = t.C
	}
	for {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			a.log.Info("agent stopping", "reason", "signal")
			return shutdown(srv)
		case now := <-idle:
			if a.Activity.IdleFor(now) >= idleExit {
				a.log.Info("agent stopping", "reason", "idle", "idle_exit", idleExit.String())
				return shutdown(srv)
			}
		}
	}
}

func shutdown(srv *http.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
