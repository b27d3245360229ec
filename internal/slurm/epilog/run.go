package epilog

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/baicommit/baicommit/api"
)

// DefaultBudget is how long the epilog waits for the job's freezes before
// it leaves them running in the agent and returns: well below the
// PrologEpilogTimeout a site sets (a hung epilog drains the node).
const DefaultBudget = 60 * time.Second

// Agent is the part of the agent's client the epilog uses
// (*client.Client).
type Agent interface {
	FreezeJob(ctx context.Context, job string, req api.JobFreezeRequest) (*api.JobFreezes, error)
	Wait(ctx context.Context, id string, poll time.Duration, onUpdate func(*api.Task)) (*api.Task, error)
}

// Outcome counts what became of a job's freezes, for the caller's exit
// message and for tests.
type Outcome struct {
	Succeeded, Failed, Running, Skipped int
	// Err is why the agent could not be asked, if it could not.
	Err error
}

// Run asks the agent to freeze the sessions of the job in env and waits
// for the freezes until budget has passed; freezes still running then go
// on in the agent. Everything is logged; nothing is returned as an error,
// since the epilog must exit 0 whatever happens.
func Run(ctx context.Context, ag Agent, env Env, budget, poll time.Duration, log *slog.Logger) Outcome {
	log = log.With("job", env.Job, "user", env.User, "node", env.Node)
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	var out Outcome

	res, err := ag.FreezeJob(ctx, env.Job, api.JobFreezeRequest{User: env.User, Exit: env.Exit})
	if err != nil {
		out.Err = err
		log.Warn("baicommit: could not ask the agent to freeze the job's sessions; nothing was frozen", "err", err)
		return out
	}
	for _, s := range res.Skipped {
		out.Skipped++
		log.Info("baicommit: session not frozen", "container", s.Container, "reason", s.Reason)
	}
	if len(res.Tasks) == 0 {
		log.Info("baicommit: no session of this job to freeze", "policy", res.Policy, "exit", env.Exit)
		return out
	}
	for _, t := range res.Tasks {
		log.Info("baicommit: freezing a session of the ended job", "task", t.ID, "container", t.Container, "archive", archivePath(&t))
	}
	// One deadline for all: the tasks run in parallel in the agent, so
	// waiting for them one after the other costs no extra time.
	for _, t := range res.Tasks {
		final, err := ag.Wait(ctx, t.ID, poll, nil)
		switch {
		case err != nil && errors.Is(err, context.DeadlineExceeded):
			out.Running++
			log.Warn("baicommit: freeze still running when the epilog's time budget ran out; it goes on in the agent",
				"task", t.ID, "container", t.Container, "budget", budget.String(), "follow", "baicommit status "+t.ID)
		case err != nil:
			out.Running++
			log.Warn("baicommit: lost sight of a freeze; it may go on in the agent", "task", t.ID, "container", t.Container, "err", err)
		case final.State == api.StateSucceeded:
			out.Succeeded++
			log.Info("baicommit: session frozen", "task", t.ID, "container", t.Container, "archive", archivePath(final),
				"size", archiveSize(final), "seconds", final.Durations.Total)
		default:
			out.Failed++
			log.Warn("baicommit: freeze failed", "task", t.ID, "container", t.Container, "err", final.Error)
		}
	}
	return out
}

// archivePath is where a freeze went: its archive, or its image in the
// layer store.
func archivePath(t *api.Task) string {
	switch {
	case t.Archive != nil:
		return t.Archive.Path
	case t.Store != nil:
		return t.Store.Path
	}
	return ""
}

// archiveSize is what a freeze wrote.
func archiveSize(t *api.Task) int64 {
	n := int64(0)
	if t.Archive != nil {
		n += t.Archive.Size
	}
	if t.Store != nil {
		n += t.Store.Written
	}
	return n
}
