package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// run runs a binary as root with args and an environment of its own.
func runBin(t *testing.T, env []string, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		r.code = -1
	}
	return r
}

// All four binaries answer --help, -h and --version like the CLI, refuse
// an unknown flag with exit 2, and agree on the version they were built
// as, which the agent also reports in /v1/version.
func TestBinariesHelpAndVersion(t *testing.T) {
	names := []string{"baicommit", "baicommit-agent", "baicommit-manager", "baicommit-epilog"}
	versions := map[string]string{}
	for _, name := range names {
		bin := filepath.Join(bins.dir, name)
		t.Run(name, func(t *testing.T) {
			for _, flag := range []string{"--help", "-h"} {
				r := runBin(t, nil, bin, flag)
				assert.Check(t, is.Equal(r.code, 0), "%s %s: %s", name, flag, r)
				assert.Check(t, is.Contains(r.stdout, "USAGE:"), "%s %s: %s", name, flag, r)
				assert.Check(t, is.Contains(r.stdout, "--version"), "%s %s: %s", name, flag, r)
			}
			r := runBin(t, nil, bin, "--version")
			assert.Check(t, is.Equal(r.code, 0), "%s", r)
			v, ok := strings.CutPrefix(strings.TrimSpace(r.stdout), name+" version ")
			assert.Check(t, ok, "%s --version: %s", name, r)
			versions[name] = v

			r = runBin(t, nil, bin, "--no-such-flag")
			assert.Check(t, is.Equal(r.code, 2), "%s", r)
			assert.Check(t, is.Contains(r.stderr, "no-such-flag"), "%s", r)
			if name == "baicommit" {
				assert.Check(t, is.Contains(r.stderr, "Run 'baicommit --help' for usage."), "%s", r)
			} else {
				assert.Check(t, is.Contains(r.stderr, "USAGE:"), "the daemons print their usage: %s", r)
			}
		})
	}
	v := versions["baicommit"]
	assert.Check(t, v != "" && v != "dev", "make build sets the version (got %q)", v)
	for _, name := range names {
		assert.Check(t, is.Equal(versions[name], v), "%s", name)
	}

	// Run by slurmd, the epilog exits 0 even on a bad flag: a failing
	// epilog would drain the node.
	r := runBin(t, []string{"SLURM_JOB_ID=1", "SLURM_SCRIPT_CONTEXT=epilog_slurmd"}, filepath.Join(bins.dir, "baicommit-epilog"), "--no-such-flag")
	assert.Check(t, is.Equal(r.code, 0), "%s", r)

	a := newAgent(t).start()
	info, err := a.client(t).Version(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(info.Version, v), "/v1/version")
}
