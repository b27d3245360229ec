// Package policy is the site's rules for freezes: where archives go (the
// save path template, the roots below which anything may be written, the
// file name, the mode), what goes into them (environment scrubbing) and
// which sessions a Slurm job's end freezes. The agent enforces it; the
// manager passes on the save path. Who is an admin is package identity's
// rule; reading the TOML that holds it is package config's.
package policy

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/units"
)

// Policy is the site's rules for freezes.
type Policy struct {
	// SavePath is the directory template archives go to: {user} {uid}
	// {node} {job} {date}.
	SavePath string `toml:"save_path"`
	// SaveRoots are the directories the agent may write below. Empty
	// means the fixed prefix of SavePath (everything before the first
	// placeholder's directory).
	SaveRoots []string `toml:"save_roots"`
	// FileName is the archive file name template without ".tar.gz":
	// {container} {user} {node} {job} {date} {time} {task}.
	FileName string `toml:"file_name"`
	// ArchiveMode is the permission of archives and sidecars, octal. The
	// directories the agent creates for them follow it (0600: 0700, 0640:
	// 0750; safefile.DirModeFor).
	ArchiveMode string `toml:"archive_mode"`
	// KeepImage keeps the committed image in the owner's Podman.
	KeepImage bool `toml:"keep_image"`
	// CompressionLevel is the gzip level, 1 (fastest) to 9.
	CompressionLevel int `toml:"compression_level"`
	// ScrubEnv lists glob patterns of environment variable names removed
	// from the frozen image's config.
	ScrubEnv []string `toml:"scrub_env"`
	// FreezeMethod is how freezes are made: FreezeDirect (read the
	// container's storage, the default) or FreezeCommit (podman commit,
	// then export the image).
	FreezeMethod string `toml:"freeze_method"`
	// Exclude are glob patterns of container paths (path.Match, absolute)
	// left out of every freeze with everything below them.
	Exclude []string `toml:"exclude"`

	// Quota limits what users and project groups keep; MaxFreezeSize
	// refuses a freeze whose changes are larger.
	Quota         Quotas     `toml:"quota"`
	MaxFreezeSize units.Size `toml:"max_freeze_size"`
	// Retention says which archives stay after a freeze and on a prune.
	Retention Retention `toml:"retention"`
	// BeforeFreeze are commands run in a session before it is read, as
	// its user, each within BeforeFreezeTimeout; a failure is a warning,
	// or aborts the freeze when BeforeFreezeFailure is "abort".
	BeforeFreeze        []string       `toml:"before_freeze"`
	BeforeFreezeTimeout units.Duration `toml:"before_freeze_timeout"`
	BeforeFreezeFailure string         `toml:"before_freeze_failure"`
	// Format is what a freeze writes unless asked otherwise:
	// api.FormatArchive, api.FormatStore or api.FormatBoth; Formats are
	// those a request may ask for. StorePath is the layer store's
	// directory template ({user} {uid} {group}, the owner's primary
	// group); empty means "store" in the user's save directory.
	Format    string   `toml:"format"`
	Formats   []string `toml:"formats"`
	StorePath string   `toml:"store_path"`

	// EpilogFreeze selects the sessions frozen when a Slurm job ends:
	// EpilogLabelled, EpilogJob or EpilogOff.
	EpilogFreeze string `toml:"epilog_freeze"`
	// EpilogStop stops a session of the ended job that still runs (its
	// processes escaped the job) before freezing it.
	EpilogStop bool `toml:"epilog_stop"`
}

// DefaultBeforeFreezeTimeout bounds each command run before a freeze.
const DefaultBeforeFreezeTimeout = 10 * time.Minute

// Values of freeze_method.
const (
	FreezeDirect = "direct"
	FreezeCommit = "commit"
)

// DefaultScrubEnv are the variable name patterns removed by default.
var DefaultScrubEnv = []string{
	"*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*", "*_PASS",
	"*_KEY", "*_KEYS", "*PRIVATE_KEY*", "*API_KEY*", "*CREDENTIAL*", "AWS_*", "MUNGE_*",
}

// Default returns the policy used for keys a configuration leaves out.
func Default() Policy {
	return Policy{
		SavePath:            "/var/lib/baicommit/archives/{user}",
		FileName:            "{container}-{time}-{job}-{node}-{task}",
		ArchiveMode:         "0600",
		CompressionLevel:    1,
		FreezeMethod:        FreezeDirect,
		Format:              api.FormatArchive,
		Formats:             api.AllFormats(),
		BeforeFreezeTimeout: units.Duration{Duration: DefaultBeforeFreezeTimeout},
		BeforeFreezeFailure: BeforeWarn,
		EpilogFreeze:        EpilogLabelled,
		EpilogStop:          true,
		// A copy: decoding a configuration fills this slice in place.
		ScrubEnv: slices.Clone(DefaultScrubEnv),
	}
}

// Validate checks the policy and fills in derived values.
func (p *Policy) Validate() error {
	if !filepath.IsAbs(p.SavePath) || slices.Contains(strings.Split(p.SavePath, "/"), "..") {
		return fmt.Errorf("save_path %q must be an absolute path without '..'", p.SavePath)
	}
	p.SavePath = filepath.Clean(p.SavePath)
	if len(p.SaveRoots) == 0 {
		p.SaveRoots = []string{fixedPrefix(p.SavePath)}
	}
	for i, r := range p.SaveRoots {
		if !filepath.IsAbs(r) {
			return fmt.Errorf("save_roots: %q must be an absolute path", r)
		}
		p.SaveRoots[i] = filepath.Clean(r)
	}
	if _, err := p.Mode(); err != nil {
		return err
	}
	if p.CompressionLevel < 1 || p.CompressionLevel > 9 {
		return fmt.Errorf("compression_level %d: must be 1 (fastest) to 9 (smallest)", p.CompressionLevel)
	}
	if p.FileName == "" || strings.Contains(p.FileName, "/") {
		return fmt.Errorf("file_name %q: must be a non-empty file name without '/'", p.FileName)
	}
	// Try the templates now: a misspelt placeholder must stop the agent
	// from starting, not fail every freeze after its commit.
	probe := Vars{User: "user", UID: "1000", Node: "node", Job: "1", Container: "c", Task: "t", Time: time.Now()}
	if _, _, err := p.Destination(probe); err != nil {
		return err
	}
	if _, err := p.ArchiveName(probe); err != nil {
		return err
	}
	if err := p.validateEpilog(); err != nil {
		return err
	}
	for _, pat := range p.ScrubEnv {
		if _, err := filepath.Match(pat, ""); err != nil {
			return fmt.Errorf("scrub_env pattern %q: %w", pat, err)
		}
	}
	switch p.FreezeMethod {
	case "":
		p.FreezeMethod = FreezeDirect
	case FreezeDirect, FreezeCommit:
	default:
		return fmt.Errorf("freeze_method %q: want %q (read the container's storage) or %q (podman commit)", p.FreezeMethod, FreezeDirect, FreezeCommit)
	}
	if err := ValidExclude("exclude", p.Exclude); err != nil {
		return err
	}
	if err := p.Quota.validate(); err != nil {
		return err
	}
	if p.MaxFreezeSize < 0 {
		return fmt.Errorf("max_freeze_size %d: must be 0 (no limit) or more", p.MaxFreezeSize)
	}
	if err := p.Retention.Validate("retention"); err != nil {
		return err
	}
	for _, c := range p.BeforeFreeze {
		if _, err := Command("before_freeze command", c); err != nil {
			return err
		}
	}
	switch p.BeforeFreezeFailure {
	case "":
		p.BeforeFreezeFailure = BeforeWarn
	case BeforeWarn, BeforeAbort:
	default:
		return fmt.Errorf("before_freeze_failure %q: want %q (a failing command is a warning) or %q (it aborts the freeze)", p.BeforeFreezeFailure, BeforeWarn, BeforeAbort)
	}
	switch {
	case p.BeforeFreezeTimeout.Duration == 0:
		p.BeforeFreezeTimeout.Duration = DefaultBeforeFreezeTimeout
	case p.BeforeFreezeTimeout.Duration < 0:
		return fmt.Errorf("before_freeze_timeout %s: must be positive", p.BeforeFreezeTimeout.Duration)
	}
	return p.validateStore()
}

// ValidExclude checks exclusion patterns (key names them in the error):
// absolute container paths, globs as path.Match reads them.
func ValidExclude(key string, patterns []string) error {
	for _, pat := range patterns {
		if !strings.HasPrefix(pat, "/") {
			return fmt.Errorf("%s pattern %q: give an absolute container path, like /root/.cache", key, pat)
		}
		if _, err := path.Match(pat, "/"); err != nil {
			return fmt.Errorf("%s pattern %q: %w", key, pat, err)
		}
	}
	return nil
}

// Mode parses ArchiveMode.
func (p *Policy) Mode() (uint32, error) {
	m, err := strconv.ParseUint(p.ArchiveMode, 8, 32)
	if err != nil || m&^0o777 != 0 || m&0o600 != 0o600 || m&0o022 != 0 {
		return 0, fmt.Errorf("archive_mode %q: want an octal permission the owner can read and write and nobody else can write, like 0600 (the default) or 0640 (for a project group)", p.ArchiveMode)
	}
	return uint32(m), nil
}

// fixedPrefix is the longest directory prefix of a template without
// placeholders.
func fixedPrefix(tmpl string) string {
	i := strings.IndexByte(tmpl, '{')
	if i < 0 {
		return filepath.Clean(tmpl)
	}
	return filepath.Dir(tmpl[:i+1])
}

// Vars are the values a template may use. Every value must already be
// one that Safe accepts; Expand refuses anything else.
type Vars struct {
	User, UID, Node, Job, Container, Task string
	// Group is the owner's primary group (store_path only).
	Group string
	Time  time.Time
}

// ErrBadName marks a user-supplied name that cannot be used in a path.
var ErrBadName = errors.New("bad name")

var safeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$`)

// Safe reports whether s may appear in a path component: letters, digits
// and _ . + - , not starting with a dot or a dash, at most 128 bytes.
func Safe(s string) bool { return safeRE.MatchString(s) }

func (v Vars) lookup(key string) (string, error) {
	var val string
	switch key {
	case "user":
		val = v.User
	case "uid":
		val = v.UID
	case "node":
		val = v.Node
	case "job":
		val = v.Job
		if val == "" {
			val = "nojob"
		}
	case "container":
		val = v.Container
	case "task":
		val = v.Task
	case "group":
		val = v.Group
	case "date":
		return v.Time.UTC().Format("2006-01-02"), nil
	case "time":
		return v.Time.UTC().Format("20060102T150405Z"), nil
	default:
		return "", fmt.Errorf("unknown placeholder {%s}", key)
	}
	if !Safe(val) {
		return "", fmt.Errorf("%w: {%s} would be %q, which is not a safe path component", ErrBadName, key, val)
	}
	return val, nil
}

func expand(tmpl string, v Vars) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			return b.String(), nil
		}
		j := strings.IndexByte(tmpl[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unclosed placeholder in %q", tmpl)
		}
		val, err := v.lookup(tmpl[i+1 : i+j])
		if err != nil {
			return "", err
		}
		b.WriteString(tmpl[:i])
		b.WriteString(val)
		tmpl = tmpl[i+j+1:]
	}
}

// Destination expands the save path for v and returns the directory and
// the save root it lies below.
func (p *Policy) Destination(v Vars) (dir, root string, err error) {
	dir, err = expand(p.SavePath, v)
	if err != nil {
		return "", "", fmt.Errorf("save_path: %w", err)
	}
	if filepath.Clean(dir) != dir || slices.Contains(strings.Split(dir, "/"), "..") {
		return "", "", fmt.Errorf("%w: save path %q is not clean", ErrBadName, dir)
	}
	for _, r := range p.SaveRoots {
		if dir == r || strings.HasPrefix(dir, r+"/") || r == "/" {
			return dir, r, nil
		}
	}
	return "", "", fmt.Errorf("save path %s is outside the allowed save_roots %v", dir, p.SaveRoots)
}

// MaxArchiveName is the longest archive file name: well below the 255
// bytes of a path component, leaving room for the sidecar's name.
const MaxArchiveName = 200

// ArchiveName expands the file name template for v, with api.ArchiveSuffix.
func (p *Policy) ArchiveName(v Vars) (string, error) {
	name, err := expand(p.FileName, v)
	if err != nil {
		return "", fmt.Errorf("file_name: %w", err)
	}
	name += api.ArchiveSuffix
	if len(name) > MaxArchiveName {
		return "", fmt.Errorf("%w: archive name %q is longer than %d bytes", ErrBadName, name, MaxArchiveName)
	}
	return name, nil
}
