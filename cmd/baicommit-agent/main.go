// Command baicommit-agent is the node daemon that freezes rootless Podman
// sessions into archives. See agent.toml.example and systemd/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/baicommit/baicommit/agent"
	"github.com/baicommit/baicommit/agent/export"
	"github.com/coreos/go-systemd/v22/activation"
	"go.podman.io/storage/pkg/reexec"
)

func main() {
	// Helpers re-execute this binary; reexec handles storage's own
	// re-exec entry points before anything else runs.
	if reexec.Init() {
		return
	}
	if len(os.Args) == 3 && os.Args[1] == export.Command {
		os.Exit(export.Main(os.Args[2]))
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log, os.Args[1:]); err != nil {
		log.Error("agent failed", "err", err)
		fmt.Fprintln(os.Stderr, "baicommit-agent:", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("baicommit-agent", flag.ContinueOnError)
	config := fs.String("config", "/etc/baicommit/agent.toml", "configuration file (TOML)")
	var listen listenFlag
	fs.Var(&listen, "listen", "listen on unix:///PATH (local users) or tcp://HOST:PORT (the manager) instead of the sockets systemd passes; repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := agent.LoadConfig(*config)
	if err != nil {
		return err
	}
	lns, activated, err := listeners(listen)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, self, log)
	if err != nil {
		return err
	}
	defer a.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := agent.NewServer(a)
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- srv.Serve(ln) }()
	}
	log.Info("agent started", "node", cfg.NodeName, "listeners", len(lns), "socket_activated", activated, "version", agent.Version)

	var idle <-chan time.Time
	if activated && cfg.IdleExit.Duration > 0 {
		t := time.NewTicker(min(cfg.IdleExit.Duration/4, time.Second))
		defer t.Stop()
		idle = t.C
	}
	for {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			log.Info("agent stopping", "reason", "signal")
			return shutdown(srv)
		case now := <-idle:
			// systemd keeps the socket and starts us again on the next
			// connection, so an idle agent need not stay.
			if a.Activity.IdleFor(now) >= cfg.IdleExit.Duration {
				log.Info("agent stopping", "reason", "idle", "idle_exit", cfg.IdleExit.String())
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

// listenFlag collects --listen addresses.
type listenFlag []string

func (l *listenFlag) String() string     { return fmt.Sprint([]string(*l)) }
func (l *listenFlag) Set(s string) error { *l = append(*l, s); return nil }

// listeners returns the sockets to serve: those named by --listen, or those
// systemd (or systemd-socket-activate) passed. Which kind a socket is
// decides how callers prove who they are: peer credentials on unix
// sockets, the manager's MUNGE credential on TCP.
func listeners(listen []string) ([]net.Listener, bool, error) {
	if len(listen) > 0 {
		var lns []net.Listener
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
	lns, err := activation.Listeners()
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
