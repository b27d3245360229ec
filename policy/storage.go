package policy

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/argv"
	"github.com/baicommit/baicommit/internal/units"
)

// Quota is what a user, or a group's project directory, may keep: archive
// count and bytes; zero means no limit.
type Quota struct {
	MaxArchives int        `toml:"max_archives"`
	MaxBytes    units.Size `toml:"max_bytes"`
}

// Quotas are the site's limits on what freezes keep.
type Quotas struct {
	// Quota is every user's, below their save directory.
	Quota
	// Groups are project directories' quotas, by Unix group name.
	Groups map[string]Quota `toml:"groups"`
}

// API is q as it travels to an agent.
func (q Quota) API() api.Quota {
	return api.Quota{MaxArchives: q.MaxArchives, MaxBytes: int64(q.MaxBytes)}
}

// APIQuotas are the site's quotas and freeze size limit as they travel.
func (p *Policy) APIQuotas() *api.Quotas { return p.Quota.API(p.MaxFreezeSize) }

// API is q, with the freeze size limit maxFreeze, as it travels.
func (q Quotas) API(maxFreeze units.Size) *api.Quotas {
	out := &api.Quotas{User: q.Quota.API(), MaxFreezeSize: int64(maxFreeze)}
	for g, q := range q.Groups {
		if out.Groups == nil {
			out.Groups = map[string]api.Quota{}
		}
		out.Groups[g] = q.API()
	}
	return out
}

func (q Quota) validate(key string) error {
	if q.MaxArchives < 0 {
		return fmt.Errorf("%s.max_archives %d: must be 0 (no limit) or more", key, q.MaxArchives)
	}
	if q.MaxBytes < 0 {
		return fmt.Errorf("%s.max_bytes %d: must be 0 (no limit) or more", key, q.MaxBytes)
	}
	return nil
}

// Validate checks the quotas and the freeze size limit.
func (q Quotas) Validate(maxFreeze units.Size) error {
	if maxFreeze < 0 {
		return fmt.Errorf("max_freeze_size %d: must be 0 (no limit) or more", maxFreeze)
	}
	return q.validate()
}

func (q Quotas) validate() error {
	if err := q.Quota.validate("quota"); err != nil {
		return err
	}
	for g, gq := range q.Groups {
		if !Safe(g) {
			return fmt.Errorf("quota.groups: %q is not a group name", g)
		}
		if err := gq.validate("quota.groups." + g); err != nil {
			return err
		}
	}
	return nil
}

// Retention says which archives stay when a freeze ends or a user prunes:
// an archive stays when one rule keeps it, and the newest of each source
// container always does. With no rule set nothing is ever removed.
type Retention struct {
	// KeepPerContainer keeps the newest N archives of each container.
	KeepPerContainer int `toml:"keep_per_container"`
	// KeepPerJob keeps the newest N archives of each Slurm job.
	KeepPerJob int `toml:"keep_per_job"`
	// KeepYoungerThan keeps archives made less than this long ago.
	KeepYoungerThan units.Duration `toml:"keep_younger_than"`
	// KeepUsedWithin keeps archives restored less than this long ago.
	KeepUsedWithin units.Duration `toml:"keep_used_within"`
}

// On reports whether any rule is set.
func (r Retention) On() bool {
	return r.KeepPerContainer > 0 || r.KeepPerJob > 0 || r.KeepYoungerThan.Duration > 0 || r.KeepUsedWithin.Duration > 0
}

// Validate checks the rules; key names them in errors.
func (r Retention) Validate(key string) error {
	switch {
	case r.KeepPerContainer < 0:
		return fmt.Errorf("%s.keep_per_container %d: must be 0 (no such rule) or more", key, r.KeepPerContainer)
	case r.KeepPerJob < 0:
		return fmt.Errorf("%s.keep_per_job %d: must be 0 (no such rule) or more", key, r.KeepPerJob)
	case r.KeepYoungerThan.Duration < 0, r.KeepUsedWithin.Duration < 0:
		return fmt.Errorf("%s: durations must not be negative", key)
	}
	return nil
}

// Drop returns the entries retention removes, given all of one user's
// archives: those that no rule of any of the policies given keeps (a
// policy that is off keeps everything), never the newest of a container.
func Drop(entries []api.ArchiveEntry, now time.Time, policies ...Retention) []api.ArchiveEntry {
	var on []Retention
	for _, r := range policies {
		if r.On() {
			on = append(on, r)
		}
	}
	if len(on) == 0 {
		return nil
	}
	sorted := slices.Clone(entries)
	// Newest first; ties broken by path, so that two runs agree.
	slices.SortStableFunc(sorted, func(a, b api.ArchiveEntry) int {
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(a.Path, b.Path))
	})
	rank := func(key func(api.ArchiveEntry) string) map[string]int {
		seen := map[string]int{}
		out := map[string]int{}
		for _, e := range sorted {
			k := key(e)
			seen[k]++
			out[e.Path] = seen[k]
		}
		return out
	}
	byContainer := rank(func(e api.ArchiveEntry) string { return e.SourceID + "\x00" + e.SourceContainer })
	byJob := rank(func(e api.ArchiveEntry) string { return e.Job })
	kept := func(r Retention, e api.ArchiveEntry) bool {
		switch {
		case r.KeepPerContainer > 0 && byContainer[e.Path] <= r.KeepPerContainer:
			return true
		case r.KeepPerJob > 0 && e.Job != "" && byJob[e.Path] <= r.KeepPerJob:
			return true
		case r.KeepYoungerThan.Duration > 0 && now.Sub(e.Created) < r.KeepYoungerThan.Duration:
			return true
		case r.KeepUsedWithin.Duration > 0 && !e.LastUsed.IsZero() && now.Sub(e.LastUsed) < r.KeepUsedWithin.Duration:
			return true
		}
		return false
	}
	var drop []api.ArchiveEntry
	for _, e := range sorted {
		if byContainer[e.Path] == 1 {
			continue // the newest of its container stays, always
		}
		for _, r := range on {
			if !kept(r, e) {
				drop = append(drop, e)
				break
			}
		}
	}
	return drop
}

// Values of before_freeze_failure.
const (
	BeforeWarn  = "warn"
	BeforeAbort = "abort"
)

// Command splits a command line into its arguments (package argv); key
// names the setting or flag in the error.
func Command(key, line string) ([]string, error) { return argv.Split(key, line) }
