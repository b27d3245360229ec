// Command baicommit-manager is the cluster-wide front of baicommit (package
// manager): it authenticates users with MUNGE and relays their requests to
// the agent of the node that runs their session. See manager.toml.example.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/internal/cliapp"
	"github.com/baicommit/baicommit/manager"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := cliapp.Run(ctx, app(), os.Args)
	stop()
	os.Exit(code)
}

func app() *ucli.App {
	a := cliapp.New("baicommit-manager", "the cluster-wide front of baicommit: MUNGE authentication, routing to node agents, status, metrics, the web page", os.Stdout, os.Stderr)
	a.Flags = []ucli.Flag{
		&ucli.StringFlag{Name: "config", Value: "/etc/baicommit/manager.toml", Usage: "configuration `FILE` (TOML)"},
		&ucli.StringFlag{Name: "listen", Usage: "TCP `ADDRESS` to listen on, overriding the configuration's listen"},
	}
	a.Action = cliapp.NoArgs(func(c *ucli.Context) error {
		log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
		cfg, err := manager.LoadConfig(c.String("config"))
		if err != nil {
			return err
		}
		if l := c.String("listen"); l != "" {
			cfg.Listen = l
		}
		m, err := manager.New(cfg, nil, log)
		if err != nil {
			return err
		}
		if err := m.ListenAndServe(c.Context); err != nil {
			log.Error("manager failed", "err", err)
			return err
		}
		return nil
	})
	return a
}
