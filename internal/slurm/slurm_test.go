package slurm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestSlurmCommands(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) {
		assert.NilError(t, os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755))
	}
	script("squeue", `case "$*" in
*--jobs\ 42*) echo '42|alice|RUNNING|cn[01-02]' ;;
*--jobs*) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1 ;;
*--user*) printf 'cn01\ncn[01-02]\n' ;;
esac`)
	script("scontrol", `[ "$1 $2 $3" = "show hostnames cn[01-02]" ] && printf 'cn01\ncn02\n'`)
	c := Commands{BinDir: dir}
	ctx := context.Background()
	j, err := c.Job(ctx, "42")
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(j, &Job{ID: "42", User: "alice", State: "RUNNING", Nodes: []string{"cn01", "cn02"}}))
	_, err = c.Job(ctx, "7")
	assert.Check(t, errors.Is(err, ErrNoJob), "%v", err)
	_, err = c.Job(ctx, "7; rm -rf /")
	assert.Check(t, is.ErrorContains(err, "not a Slurm job id"))
	ns, err := c.UserNodes(ctx, "alice")
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(ns, []string{"cn01", "cn02"}))
	_, err = Commands{BinDir: filepath.Join(dir, "none")}.Nodes(ctx)
	assert.Check(t, errors.Is(err, ErrUnavailable), "%v", err)
	assert.Check(t, strings.Contains(err.Error(), "sinfo"))
}
