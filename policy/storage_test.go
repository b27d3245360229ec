package policy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/config"
	"github.com/baicommit/baicommit/internal/units"
	"github.com/baicommit/baicommit/policy"
)

func entry(path, ctr, job string, created time.Time) api.ArchiveEntry {
	return api.ArchiveEntry{Path: path, Sidecar: api.Sidecar{SourceContainer: ctr, SourceID: ctr + "-id", Job: job, Created: created}}
}

func paths(es []api.ArchiveEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Path)
	}
	return out
}

func TestDrop(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	all := []api.ArchiveEntry{
		entry("a1", "a", "1", now.Add(-10*day)),
		entry("a2", "a", "1", now.Add(-5*day)),
		entry("a3", "a", "2", now.Add(-1*day)),
		entry("a4", "a", "2", now.Add(-time.Hour)),
		entry("b1", "b", "", now.Add(-30*day)),
	}
	used := all[0]
	used.LastUsed = now.Add(-2 * day)
	withUse := append([]api.ArchiveEntry{used}, all[1:]...)
	for _, tc := range []struct {
		name     string
		entries  []api.ArchiveEntry
		policies []policy.Retention
		want     []string
	}{
		{name: "off", entries: all, policies: []policy.Retention{{}}, want: nil},
		{name: "keep 2 per container, never the newest", entries: all, policies: []policy.Retention{{KeepPerContainer: 2}}, want: []string{"a2", "a1"}},
		{name: "keep 1 per container", entries: all, policies: []policy.Retention{{KeepPerContainer: 1}}, want: []string{"a3", "a2", "a1"}},
		{name: "younger than 3 days; b's only one stays", entries: all, policies: []policy.Retention{{KeepYoungerThan: units.Duration{Duration: 3 * day}}}, want: []string{"a2", "a1"}},
		{name: "one per job", entries: all, policies: []policy.Retention{{KeepPerJob: 1}}, want: []string{"a3", "a1"}},
		{name: "used lately stays", entries: withUse, policies: []policy.Retention{{KeepPerContainer: 1, KeepUsedWithin: units.Duration{Duration: 7 * day}}}, want: []string{"a3", "a2"}},
		{name: "site and user: the stricter wins", entries: all, policies: []policy.Retention{{KeepPerContainer: 3}, {KeepYoungerThan: units.Duration{Duration: 2 * day}}}, want: []string{"a2", "a1"}},
		{name: "user only", entries: all, policies: []policy.Retention{{}, {KeepPerContainer: 3}}, want: []string{"a1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := policy.Drop(tc.entries, now, tc.policies...)
			assert.Check(t, is.DeepEqual(paths(got), tc.want))
		})
	}
}

// The storage keys load from agent.toml, and bad values name their key.
func TestStorageKeys(t *testing.T) {
	load := func(t *testing.T, body string) (policy.Policy, error) {
		t.Helper()
		p := policy.Default()
		path := filepath.Join(t.TempDir(), "agent.toml")
		assert.NilError(t, os.WriteFile(path, []byte(body), 0o644))
		if err := config.Load(path, &p); err != nil {
			return p, err
		}
		return p, p.Validate()
	}
	p, err := load(t, `
max_freeze_size = "50GiB"
before_freeze = ["conda clean -afy", "pip cache purge"]
before_freeze_timeout = "2m"
before_freeze_failure = "abort"
[quota]
max_archives = 20
max_bytes = "500GiB"
[quota.groups.mlproj]
max_archives = 100
max_bytes = 1099511627776
[retention]
keep_per_container = 3
keep_younger_than = "30d"
keep_used_within = "1w"
`)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(p.MaxFreezeSize, units.Size(50<<30)))
	assert.Check(t, is.Equal(p.Quota.MaxArchives, 20))
	assert.Check(t, is.Equal(p.Quota.MaxBytes, units.Size(500<<30)))
	assert.Check(t, is.Equal(p.Quota.Groups["mlproj"].MaxBytes, units.Size(1<<40)))
	assert.Check(t, is.Equal(p.Retention.KeepYoungerThan.Duration, 30*24*time.Hour))
	assert.Check(t, is.Equal(p.Retention.KeepUsedWithin.Duration, 7*24*time.Hour))
	assert.Check(t, is.Equal(p.BeforeFreezeTimeout.Duration, 2*time.Minute))
	q := p.APIQuotas()
	assert.Check(t, is.DeepEqual(q.User, api.Quota{MaxArchives: 20, MaxBytes: 500 << 30}))
	assert.Check(t, is.Equal(q.MaxFreezeSize, int64(50<<30)))

	for _, tc := range []struct{ body, want string }{
		{`max_freeze_size = "huge"`, `"huge": want a number of bytes`},
		{"[quota]\nmax_bytes = \"lots\"", `"lots": want a number of bytes`},
		{"[quota]\nmax_archives = -1", "quota.max_archives -1: must be 0 (no limit) or more"},
		{"[quota.groups.ml]\nmax_archives = -2", "quota.groups.ml.max_archives -2"},
		{"[retention]\nkeep_per_container = -1", "retention.keep_per_container -1"},
		{"[retention]\nkeep_younger_than = \"a while\"", `invalid duration "a while"`},
		{`before_freeze = ["echo 'unbalanced"]`, `before_freeze command "echo 'unbalanced" does not parse`},
		{`before_freeze_failure = "panic"`, `before_freeze_failure "panic": want "warn"`},
		{`exclude = ["/root/[z"]`, `exclude pattern "/root/[z"`},
	} {
		_, err := load(t, tc.body)
		assert.Check(t, err != nil && strings.Contains(err.Error(), tc.want), "%s: %v", tc.body, err)
	}
}
