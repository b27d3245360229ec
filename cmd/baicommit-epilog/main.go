// Command baicommit-epilog is the Slurm Epilog (or a program an existing
// epilog script calls) that freezes the sessions of the job that just ended
// on this node through the node's baicommit agent (package epilog). It
// needs no PATH, logs to the system log and stderr, and, when slurmd runs
// it, always exits 0: a failing epilog would drain the node. See
// contrib/slurm/README.md.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/client"
	"github.com/baicommit/baicommit/internal/cliapp"
	"github.com/baicommit/baicommit/internal/slurm/epilog"
)

func main() {
	// Under slurmd nothing may end this program with another status: a
	// typo in a wrapper script's flags must not drain the node either.
	underSlurm := os.Getenv("SLURM_SCRIPT_CONTEXT") != "" || os.Getenv("SLURM_JOB_ID") != ""
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "%s: internal error: %v\n", epilog.Tag, r)
			os.Exit(0)
		}
	}()
	// slurmd kills an epilog that overruns PrologEpilogTimeout; a signal
	// ends the waiting, never the freezes.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := cliapp.Run(ctx, app(), os.Args)
	stop()
	if underSlurm && code != 0 {
		// The usage went to stderr, which slurmd does not keep: say it
		// where admins look.
		if h, err := epilog.DialSyslog(""); err == nil {
			slog.New(h).Error("baicommit: bad arguments; nothing was frozen", "args", fmt.Sprint(os.Args[1:]))
			h.Close()
		}
		code = 0
	}
	os.Exit(code)
}

func app() *ucli.App {
	a := cliapp.New(epilog.Tag, "freeze the sessions of the Slurm job that just ended on this node (the node's Epilog)", os.Stdout, os.Stderr)
	a.Flags = []ucli.Flag{
		&ucli.StringFlag{Name: "agent", Value: client.DefaultAddr, Usage: "the node agent's socket (unix:///PATH)"},
		&ucli.DurationFlag{Name: "budget", Value: epilog.DefaultBudget, Usage: "how long to wait for the freezes before leaving them to the agent (keep it below PrologEpilogTimeout)"},
		&ucli.DurationFlag{Name: "poll", Value: 500 * time.Millisecond, Usage: "how often to ask the agent about the freezes"},
		&ucli.StringFlag{Name: "syslog", Usage: `system log socket ("" the local one, "none" to log to stderr only)`},
	}
	a.Action = cliapp.NoArgs(run)
	return a
}

// run freezes the job's sessions. It reports every failure in the logs
// and returns nil: the epilog's outcome is the log, never its status.
func run(c *ucli.Context) error {
	handlers := []slog.Handler{slog.NewTextHandler(os.Stderr, nil)}
	if addr := c.String("syslog"); addr != "none" {
		if h, err := epilog.DialSyslog(addr); err == nil {
			defer h.Close()
			handlers = append(handlers, h)
		} else {
			fmt.Fprintf(os.Stderr, "%s: no system log (%v): logging to stderr only\n", epilog.Tag, err)
		}
	}
	log := slog.New(slog.NewMultiHandler(handlers...))
	env, err := epilog.ReadEnv(os.Getenv)
	if err != nil {
		log.Error("baicommit: cannot tell which job ended; nothing was frozen", "err", err)
		return nil
	}
	cl, err := client.New(c.String("agent"))
	if err != nil {
		log.Error("baicommit: bad agent address; nothing was frozen", "err", err)
		return nil
	}
	epilog.Run(c.Context, cl, env, c.Duration("budget"), c.Duration("poll"), log)
	return nil
}
