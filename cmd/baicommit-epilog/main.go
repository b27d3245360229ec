// Command baicommit-epilog is the Slurm Epilog (or a program an existing
// epilog script calls) that freezes the sessions of the job that just ended
// on this node through the node's baicommit agent. It needs no PATH, logs
// to the system log and stderr, and always exits 0: a failing epilog would
// drain the node. See contrib/slurm/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/baicommit/baicommit/client"
	"github.com/baicommit/baicommit/internal/slurm/epilog"
)

func main() {
	defer func() {
		// Whatever happens, the node must not drain because of us.
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "%s: internal error: %v\n", epilog.Tag, r)
		}
		os.Exit(0)
	}()
	run(os.Args[1:])
}

func run(args []string) {
	fs := flag.NewFlagSet(epilog.Tag, flag.ContinueOnError)
	agent := fs.String("agent", client.DefaultAddr, "the node agent's socket (unix:///PATH)")
	budget := fs.Duration("budget", epilog.DefaultBudget, "how long to wait for the freezes before leaving them to the agent (keep it below PrologEpilogTimeout)")
	poll := fs.Duration("poll", 500*time.Millisecond, "how often to ask the agent about the freezes")
	sysAddr := fs.String("syslog", "", `system log socket ("" the local one, "none" to log to stderr only)`)
	parseErr := fs.Parse(args)

	handlers := []slog.Handler{slog.NewTextHandler(os.Stderr, nil)}
	if *sysAddr != "none" {
		if h, err := epilog.DialSyslog(*sysAddr); err == nil {
			defer h.Close()
			handlers = append(handlers, h)
		} else {
			fmt.Fprintf(os.Stderr, "%s: no system log (%v): logging to stderr only\n", epilog.Tag, err)
		}
	}
	log := slog.New(slog.NewMultiHandler(handlers...))
	if parseErr != nil {
		log.Error("baicommit: bad arguments; nothing was frozen", "err", parseErr)
		return
	}

	env, err := epilog.ReadEnv(os.Getenv)
	if err != nil {
		log.Error("baicommit: cannot tell which job ended; nothing was frozen", "err", err)
		return
	}
	cl, err := client.New(*agent)
	if err != nil {
		log.Error("baicommit: bad agent address; nothing was frozen", "err", err)
		return
	}
	// slurmd kills an epilog that overruns PrologEpilogTimeout; a signal
	// ends the waiting, never the freezes.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	epilog.Run(ctx, cl, env, *budget, *poll, log)
}
