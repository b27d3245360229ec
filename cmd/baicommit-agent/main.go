// Command baicommit-agent is the node daemon that freezes rootless Podman
// sessions into archives (package agent), and, as `baicommit-agent
// as-owner OP`, the helper it runs as a session's owner (package asowner).
// See agent.toml.example and systemd/.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	ucli "github.com/urfave/cli/v2"
	"go.podman.io/storage/pkg/reexec"

	"github.com/baicommit/baicommit/agent"
	"github.com/baicommit/baicommit/agent/asowner"
	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/internal/cliapp"
	"github.com/baicommit/baicommit/internal/version"
)

func main() {
	// Helpers re-execute this binary; reexec handles storage's own
	// re-exec entry points before anything else runs.
	if reexec.Init() {
		return
	}
	// The owner-side helper speaks only package messages on its stdio:
	// no command-line parsing stands between the agent and it.
	if len(os.Args) == 3 && os.Args[1] == messages.Command {
		os.Exit(asowner.Main(os.Args[2]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := cliapp.Run(ctx, app(), os.Args)
	stop()
	os.Exit(code)
}

func app() *ucli.App {
	a := cliapp.New("baicommit-agent", "freeze rootless Podman sessions on this node (run as root, socket-activated)", os.Stdout, os.Stderr)
	a.Flags = []ucli.Flag{
		&ucli.StringFlag{Name: "config", Value: "/etc/baicommit/agent.toml", Usage: "configuration `FILE` (TOML)"},
		&ucli.StringSliceFlag{Name: "listen", Usage: "listen on unix:///PATH (local users) or tcp://HOST:PORT (the manager) instead of the sockets systemd passes; repeatable"},
	}
	a.Action = cliapp.NoArgs(serve)
	return a
}

func serve(c *ucli.Context) error {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := agent.LoadConfig(c.String("config"))
	if err != nil {
		return err
	}
	lns, activated, err := agent.Listeners(c.StringSlice("listen"))
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, agent.Deps{Binary: self}, log)
	if err != nil {
		return err
	}
	defer a.Close()
	log.Info("agent started", "node", cfg.NodeName, "listeners", len(lns), "socket_activated", activated, "version", version.Version)
	idle := cfg.IdleExit.Duration
	if !activated {
		// Without systemd holding the socket, nobody would start us again.
		idle = 0
	}
	if err := a.Serve(c.Context, lns, idle); err != nil {
		log.Error("agent failed", "err", err)
		return err
	}
	return nil
}
