// Package slurm asks a Slurm cluster where jobs run, through its commands
// (squeue, scontrol, sinfo), which every login node has and which work for
// any user.
package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/baicommit/baicommit/api"
)

// ErrNoJob means Slurm knows no running or pending job with that id.
var ErrNoJob = errors.New("no such job")

// ErrUnavailable means Slurm could not be asked or did not answer.
var ErrUnavailable = errors.New("slurm cannot answer")

// Job is a job as the manager needs it.
type Job struct {
	ID    string
	User  string
	State string // RUNNING, PENDING, COMPLETING, …
	Nodes []string
}

// Commands runs Slurm's commands from BinDir (PATH may be unset).
type Commands struct {
	// BinDir holds squeue, scontrol and sinfo; empty means /usr/bin.
	BinDir string
	// Timeout bounds each command; zero means 10 s.
	Timeout time.Duration
}

// Job returns the job with id, if Slurm still lists it.
func (c Commands) Job(ctx context.Context, id string) (*Job, error) {
	if !api.ValidJobID(id) {
		return nil, fmt.Errorf("%q is not a Slurm job id", id)
	}
	out, err := c.run(ctx, "squeue", "--noheader", "--jobs", id, "--format", "%i|%u|%T|%N")
	if err != nil {
		if strings.Contains(err.Error(), "Invalid job id") {
			return nil, fmt.Errorf("job %s: %w", id, ErrNoJob)
		}
		return nil, err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 4 || (f[0] != id && !strings.HasPrefix(f[0], id+"_")) {
			continue
		}
		nodes, err := c.Hostnames(ctx, f[3])
		if err != nil {
			return nil, err
		}
		return &Job{ID: id, User: f[1], State: f[2], Nodes: nodes}, nil
	}
	return nil, fmt.Errorf("job %s: %w", id, ErrNoJob)
}

// UserNodes returns the nodes where user has running jobs.
func (c Commands) UserNodes(ctx context.Context, user string) ([]string, error) {
	out, err := c.run(ctx, "squeue", "--noheader", "--user", user, "--states", "RUNNING,COMPLETING", "--format", "%N")
	if err != nil {
		return nil, err
	}
	return c.expandLines(ctx, out)
}

// RecentNodes returns the nodes of every job of user that Slurm still
// lists: pending ones have none, running ones theirs, and ended ones stay
// listed for MinJobAge (300 s by default), long enough to find a freeze
// that ran at a job's end.
func (c Commands) RecentNodes(ctx context.Context, user string) ([]string, error) {
	out, err := c.run(ctx, "squeue", "--noheader", "--user", user, "--states", "all", "--format", "%N")
	if err != nil {
		return nil, err
	}
	return c.expandLines(ctx, out)
}

// Nodes returns every node of the cluster.
func (c Commands) Nodes(ctx context.Context) ([]string, error) {
	out, err := c.run(ctx, "sinfo", "--noheader", "--Node", "--format", "%N")
	if err != nil {
		return nil, err
	}
	return c.expandLines(ctx, out)
}

func (c Commands) expandLines(ctx context.Context, out string) ([]string, error) {
	var nodes []string
	for _, l := range strings.Fields(out) {
		ns, err := c.Hostnames(ctx, l)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, ns...)
	}
	slices.Sort(nodes)
	return slices.Compact(nodes), nil
}

// Hostnames expands a Slurm host list such as "cn[01-03],gpu1".
func (c Commands) Hostnames(ctx context.Context, list string) ([]string, error) {
	list = strings.TrimSpace(list)
	if list == "" || list == "(null)" {
		return nil, nil
	}
	if !strings.ContainsAny(list, "[,") {
		return []string{list}, nil
	}
	out, err := c.run(ctx, "scontrol", "show", "hostnames", list)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func (c Commands) run(ctx context.Context, prog string, args ...string) (string, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dir := c.BinDir
	if dir == "" {
		dir = "/usr/bin"
	}
	cmd := exec.CommandContext(ctx, filepath.Join(dir, prog), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		if ctx.Err() != nil {
			msg = "no answer within " + timeout.String()
		}
		return "", fmt.Errorf("%w: %s: %s", ErrUnavailable, prog, msg)
	}
	return stdout.String(), nil
}
