package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/agent/podman"
	"github.com/baicommit/baicommit/policy"
)

func TestLeaveAlone(t *testing.T) {
	for _, tc := range []struct {
		policy, label string
		frozen        bool
		why           string
	}{
		{policy.EpilogLabelled, "on-exit", true, ""},
		{policy.EpilogLabelled, "", false, "not opted in: start it with --label baicommit.freeze=on-exit"},
		{policy.EpilogLabelled, "yes", false, "not opted in"},
		{policy.EpilogLabelled, "on-signal", false, "signal helper"},
		{policy.EpilogLabelled, "never", false, "baicommit.freeze=never"},
		{policy.EpilogJob, "", true, ""},
		{policy.EpilogJob, "on-exit", true, ""},
		{policy.EpilogJob, "anything", true, ""},
		{policy.EpilogJob, "never", false, "baicommit.freeze=never"},
		{policy.EpilogJob, "on-signal", false, "signal helper"},
	} {
		t.Run(tc.policy+"/"+tc.label, func(t *testing.T) {
			a := &Agent{cfg: Config{Policy: policy.Policy{EpilogFreeze: tc.policy}}}
			why := a.leaveAlone(tc.label)
			assert.Check(t, is.Equal(why == "", tc.frozen), why)
			assert.Check(t, is.Contains(why, tc.why))
		})
	}
}

func TestExitCode(t *testing.T) {
	done := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		ctr  *podman.Container
		want *int
	}{
		{"no container", nil, nil},
		{"no state", &podman.Container{}, nil},
		{"running", &podman.Container{Running: true, ExitCode: 0}, nil},
		{"created, never ran", &podman.Container{State: "created"}, nil},
		{"exited 0", &podman.Container{State: "exited", FinishedAt: done}, new(0)},
		{"killed", &podman.Container{State: "exited", ExitCode: 137, FinishedAt: done}, new(137)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := exitCode(tc.ctr)
			assert.DeepEqual(t, got, tc.want)
		})
	}
}

func TestLoadConfigEpilogKeys(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "node_name = \"n01\"\n"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cfg.EpilogFreeze, policy.EpilogLabelled))
	assert.Check(t, cfg.EpilogStop)

	cfg, err = LoadConfig(writeConfig(t, "node_name = \"n01\"\nepilog_freeze = \"job\"\nepilog_stop = false\n"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cfg.EpilogFreeze, policy.EpilogJob))
	assert.Check(t, !cfg.EpilogStop)

	_, err = LoadConfig(writeConfig(t, "node_name = \"n01\"\nepilog_freeze = \"all\"\n"))
	assert.ErrorContains(t, err, `epilog_freeze "all"`)
}

func TestMayHavePodman(t *testing.T) {
	dir := t.TempDir()
	some := filepath.Join(dir, "podman-run-1000")
	assert.NilError(t, os.Mkdir(some, 0o700))
	missing := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
	assert.Check(t, !mayHavePodman(missing))
	assert.Check(t, mayHavePodman(append(missing, some)))
	// Below a file: not "does not exist", so it counts as maybe.
	f := filepath.Join(dir, "file")
	assert.NilError(t, os.WriteFile(f, nil, 0o600))
	assert.Check(t, mayHavePodman([]string{filepath.Join(f, "x")}))

	paths := podmanStatePaths(1000, "/home/u")
	assert.Check(t, is.Contains(paths, "/tmp/podman-run-1000"))
	assert.Check(t, is.Contains(paths, "/run/user/1000/containers"))
	assert.Check(t, is.Contains(paths, "/home/u/.local/share/containers"))
}
