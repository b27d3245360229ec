package policy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/policy"
)

var when = time.Date(2024, 3, 5, 7, 8, 9, 0, time.FixedZone("CET", 3600))

func goodVars() policy.Vars {
	return policy.Vars{User: "alice", UID: "1234", Node: "n01", Job: "4711", Container: "box", Task: "0123456789ab", Time: when}
}

func validated(t *testing.T, p policy.Policy) policy.Policy {
	t.Helper()
	assert.NilError(t, p.Validate())
	return p
}

func TestDestinationExpansion(t *testing.T) {
	for _, tc := range []struct {
		name     string
		savePath string
		vars     func(*policy.Vars)
		wantDir  string
		wantRoot string
	}{
		{name: "user", savePath: "/shared/baicommit/{user}", wantDir: "/shared/baicommit/alice", wantRoot: "/shared/baicommit"},
		{name: "uid", savePath: "/shared/{uid}", wantDir: "/shared/1234", wantRoot: "/shared"},
		{name: "node", savePath: "/shared/{node}/x", wantDir: "/shared/n01/x", wantRoot: "/shared"},
		{name: "job", savePath: "/shared/{user}/{job}", wantDir: "/shared/alice/4711", wantRoot: "/shared"},
		{name: "empty job is nojob", savePath: "/shared/{user}/{job}", vars: func(v *policy.Vars) { v.Job = "" },
			wantDir: "/shared/alice/nojob", wantRoot: "/shared"},
		// {date} is the UTC date: 07:08 CET is 06:08 UTC on the same day.
		{name: "date in UTC", savePath: "/shared/{user}/{date}", wantDir: "/shared/alice/2024-03-05", wantRoot: "/shared"},
		{name: "date crossing midnight in UTC", savePath: "/shared/{date}",
			vars:    func(v *policy.Vars) { v.Time = time.Date(2024, 1, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)) },
			wantDir: "/shared/2023-12-31", wantRoot: "/shared"},
		{name: "several in one component", savePath: "/shared/{user}-{uid}@{node}", wantDir: "/shared/alice-1234@n01", wantRoot: "/shared"},
		{name: "no placeholder", savePath: "/shared/archives", wantDir: "/shared/archives", wantRoot: "/shared/archives"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy.Default()
			p.SavePath = tc.savePath
			p = validated(t, p)
			v := goodVars()
			if tc.vars != nil {
				tc.vars(&v)
			}
			dir, root, err := p.Destination(v)
			assert.NilError(t, err)
			assert.Check(t, is.Equal(dir, tc.wantDir))
			assert.Check(t, is.Equal(root, tc.wantRoot))
		})
	}
}

func TestArchiveNameExpansion(t *testing.T) {
	for _, tc := range []struct {
		fileName string
		vars     func(*policy.Vars)
		want     string
	}{
		{fileName: "{container}-{time}-{node}-{task}", want: "box-20240305T060809Z-n01-0123456789ab.tar.gz"},
		{fileName: "{user}_{job}_{date}", want: "alice_4711_2024-03-05.tar.gz"},
		{fileName: "{user}_{job}", vars: func(v *policy.Vars) { v.Job = "" }, want: "alice_nojob.tar.gz"},
		{fileName: "{uid}", want: "1234.tar.gz"},
		{fileName: "frozen", want: "frozen.tar.gz"},
	} {
		t.Run(tc.fileName, func(t *testing.T) {
			p := policy.Default()
			p.FileName = tc.fileName
			p = validated(t, p)
			v := goodVars()
			if tc.vars != nil {
				tc.vars(&v)
			}
			got, err := p.ArchiveName(v)
			assert.NilError(t, err)
			assert.Check(t, is.Equal(got, tc.want))
		})
	}
}

// hostile are values a user (or a container name) might supply that must
// never reach a path.
var hostile = map[string]string{
	"dotdot":       "..",
	"dot":          ".",
	"slash":        "a/b",
	"abs":          "/etc",
	"hidden":       ".hidden",
	"dash":         "-x",
	"space":        "a b",
	"tab":          "a\tb",
	"newline":      "a\nb",
	"too long":     strings.Repeat("a", 129),
	"unicode":      "bénédicte",
	"unicode dots": "\u2024\u2024", // ONE DOT LEADER, looks like ..
	"nul":          "a\x00b",
	"brace":        "{user}",
	"empty":        "",
}

func TestHostileValuesRefused(t *testing.T) {
	p := validated(t, policy.Policy{
		SavePath: "/shared/{user}/{uid}/{node}/{job}", FileName: "{container}-{task}",
		ArchiveMode: "0640", CompressionLevel: 1,
	})
	fields := map[string]func(*policy.Vars, string){
		"user":      func(v *policy.Vars, s string) { v.User = s },
		"uid":       func(v *policy.Vars, s string) { v.UID = s },
		"node":      func(v *policy.Vars, s string) { v.Node = s },
		"job":       func(v *policy.Vars, s string) { v.Job = s },
		"container": func(v *policy.Vars, s string) { v.Container = s },
		"task":      func(v *policy.Vars, s string) { v.Task = s },
	}
	for field, set := range fields {
		for name, val := range hostile {
			if field == "job" && val == "" {
				continue // an empty job is "nojob"
			}
			t.Run(field+"/"+name, func(t *testing.T) {
				v := goodVars()
				set(&v, val)
				var err error
				switch field {
				case "container", "task":
					_, err = p.ArchiveName(v)
				default:
					_, _, err = p.Destination(v)
				}
				assert.Check(t, errors.Is(err, policy.ErrBadName), "value %q: got %v", val, err)
			})
		}
	}
}

func TestSafe(t *testing.T) {
	for _, s := range []string{"a", "alice", "A-1_b.c+d", "a..b", "1234", strings.Repeat("x", 128)} {
		assert.Check(t, policy.Safe(s), "%q", s)
	}
	for name, s := range hostile {
		assert.Check(t, !policy.Safe(s), "%s: %q", name, s)
	}
}

func TestDestinationOutsideSaveRoots(t *testing.T) {
	for _, tc := range []struct {
		name     string
		savePath string
		roots    []string
	}{
		{name: "other tree", savePath: "/scratch/{user}", roots: []string{"/shared"}},
		{name: "prefix but not below", savePath: "/sharedother/{user}", roots: []string{"/shared"}},
		{name: "parent of root", savePath: "/shared/{user}", roots: []string{"/shared/alice/deeper"}},
		{name: "not clean template", savePath: "/shared/../etc/{user}", roots: []string{"/shared"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Refused when the agent starts, not at the first freeze.
			p := policy.Default()
			p.SavePath, p.SaveRoots = tc.savePath, tc.roots
			assert.Check(t, p.Validate() != nil, "save_path %q accepted with roots %v", tc.savePath, tc.roots)
			// And Destination refuses it on its own too.
			dir, root, err := p.Destination(goodVars())
			assert.Check(t, err != nil, "got dir %q root %q", dir, root)
			assert.Check(t, is.Equal(dir, ""))
			assert.Check(t, is.Equal(root, ""))
		})
	}
}

func TestDestinationPicksMatchingRoot(t *testing.T) {
	p := policy.Default()
	p.SavePath = "/b/{user}"
	p.SaveRoots = []string{"/a", "/b/", "/c"}
	p = validated(t, p)
	dir, root, err := p.Destination(goodVars())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(dir, "/b/alice"))
	assert.Check(t, is.Equal(root, "/b")) // cleaned by Validate
}

func TestValidateDerivesSaveRoots(t *testing.T) {
	for savePath, want := range map[string]string{
		"/shared/baicommit/{user}":        "/shared/baicommit",
		"/shared/{user}/frozen":           "/shared",
		"/shared/baicommit/u{uid}":        "/shared/baicommit",
		"/shared/baicommit/{user}/{date}": "/shared/baicommit",
		"/{user}":                         "/",
		"/shared/archives":                "/shared/archives",
		"/shared/archives/":               "/shared/archives",
	} {
		t.Run(savePath, func(t *testing.T) {
			p := policy.Default()
			p.SavePath = savePath
			assert.NilError(t, p.Validate())
			assert.Check(t, is.DeepEqual(p.SaveRoots, []string{want}))
		})
	}
}

// Harmless slips in save_path (a trailing or doubled slash) are cleaned.
func TestValidateCleansSavePath(t *testing.T) {
	for in, want := range map[string]string{
		"/shared/{user}/":  "/shared/{user}",
		"/shared//{user}":  "/shared/{user}",
		"/shared/./{user}": "/shared/{user}",
	} {
		p := policy.Default()
		p.SavePath = in
		assert.Check(t, p.Validate())
		assert.Check(t, is.Equal(p.SavePath, want))
	}
}

func TestValidateKeepsExplicitSaveRoots(t *testing.T) {
	p := policy.Default()
	p.SavePath = "/shared/x/{user}"
	p.SaveRoots = []string{"/shared//x/"}
	assert.NilError(t, p.Validate())
	assert.Check(t, is.DeepEqual(p.SaveRoots, []string{"/shared/x"}))
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*policy.Policy)
		want   string
	}{
		{"relative save_path", func(p *policy.Policy) { p.SavePath = "archives/{user}" }, "save_path"},
		{"relative save_root", func(p *policy.Policy) { p.SaveRoots = []string{"shared"} }, "save_roots"},
		{"mode with junk", func(p *policy.Policy) { p.ArchiveMode = "0777x" }, "archive_mode"},
		{"mode not owner readable", func(p *policy.Policy) { p.ArchiveMode = "0200" }, "archive_mode"},
		{"mode not owner writable", func(p *policy.Policy) { p.ArchiveMode = "0440" }, "archive_mode"},
		{"mode sticky", func(p *policy.Policy) { p.ArchiveMode = "1777" }, "archive_mode"},
		{"mode group writable", func(p *policy.Policy) { p.ArchiveMode = "0660" }, "archive_mode"},
		{"mode setuid", func(p *policy.Policy) { p.ArchiveMode = "4640" }, "archive_mode"},
		{"mode not octal", func(p *policy.Policy) { p.ArchiveMode = "0680" }, "archive_mode"},
		{"mode empty", func(p *policy.Policy) { p.ArchiveMode = "" }, "archive_mode"},
		{"mode negative", func(p *policy.Policy) { p.ArchiveMode = "-0640" }, "archive_mode"},
		{"level 0", func(p *policy.Policy) { p.CompressionLevel = 0 }, "compression_level"},
		{"level 10", func(p *policy.Policy) { p.CompressionLevel = 10 }, "compression_level"},
		{"level negative", func(p *policy.Policy) { p.CompressionLevel = -1 }, "compression_level"},
		{"file_name with slash", func(p *policy.Policy) { p.FileName = "{user}/{container}" }, "file_name"},
		{"file_name empty", func(p *policy.Policy) { p.FileName = "" }, "file_name"},
		{"scrub pattern [", func(p *policy.Policy) { p.ScrubEnv = []string{"*TOKEN*", "["} }, "scrub_env"},
		{"scrub pattern bad class", func(p *policy.Policy) { p.ScrubEnv = []string{"A[-"} }, "scrub_env"},
		{"scrub pattern trailing escape", func(p *policy.Policy) { p.ScrubEnv = []string{"A\\"} }, "scrub_env"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy.Default()
			tc.modify(&p)
			assert.ErrorContains(t, p.Validate(), tc.want)
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		modify   func(*policy.Policy)
		wantMode uint32
	}{
		{"default", func(*policy.Policy) {}, 0o600},
		{"project group", func(p *policy.Policy) { p.ArchiveMode = "0640" }, 0o640},
		{"mode without leading zero", func(p *policy.Policy) { p.ArchiveMode = "644" }, 0o644},
		{"mode owner only", func(p *policy.Policy) { p.ArchiveMode = "0600" }, 0o600},
		{"level 9", func(p *policy.Policy) { p.CompressionLevel = 9 }, 0o600},
		{"no scrub patterns", func(p *policy.Policy) { p.ScrubEnv = nil }, 0o600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy.Default()
			tc.modify(&p)
			assert.NilError(t, p.Validate())
			m, err := p.Mode()
			assert.NilError(t, err)
			assert.Check(t, is.Equal(m, tc.wantMode))
		})
	}
}

// A save_path or file_name that can never be expanded (a misspelt
// placeholder, an unclosed brace) or that never yields a clean directory
// should be refused when the configuration is loaded, not on every freeze
// after the commit has already happened.
func TestValidateRejectsTemplatesThatCannotExpand(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*policy.Policy)
	}{
		{"misspelt placeholder in save_path", func(p *policy.Policy) { p.SavePath = "/shared/{usr}" }},
		{"unclosed placeholder in save_path", func(p *policy.Policy) { p.SavePath = "/shared/{user" }},
		{"save_path with ..", func(p *policy.Policy) { p.SavePath = "/shared/../{user}" }},
		{"misspelt placeholder in file_name", func(p *policy.Policy) { p.FileName = "{containr}-{task}" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy.Default()
			tc.modify(&p)
			assert.Check(t, p.Validate() != nil, "Validate accepted save_path %q, file_name %q", p.SavePath, p.FileName)
		})
	}
}

func TestExpandErrors(t *testing.T) {
	p := policy.Default()
	p.FileName = "{nope}"
	_, err := p.ArchiveName(goodVars())
	assert.ErrorContains(t, err, "unknown placeholder {nope}")
	assert.Check(t, !errors.Is(err, policy.ErrBadName))

	p.FileName = "{container"
	_, err = p.ArchiveName(goodVars())
	assert.ErrorContains(t, err, "unclosed placeholder")
}

// Each value is at most 128 bytes, but the default file name joins four
// of them: the result must still be a name the filesystem accepts (255
// bytes), and that should be known before the export runs.
func TestArchiveNameNotTooLong(t *testing.T) {
	p := validated(t, policy.Default())
	v := goodVars()
	v.Container = strings.Repeat("c", 128)
	v.Node = strings.Repeat("n", 128)
	name, err := p.ArchiveName(v)
	assert.Check(t, err != nil, "got a %d-byte name", len(name))
}

func TestDefaultIsValid(t *testing.T) {
	p := policy.Default()
	assert.NilError(t, p.Validate())
	assert.Check(t, is.DeepEqual(p.SaveRoots, []string{"/var/lib/baicommit/archives"}))
	assert.Check(t, !p.KeepImage)
	dir, root, err := p.Destination(goodVars())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(dir, "/var/lib/baicommit/archives/alice"))
	assert.Check(t, is.Equal(root, "/var/lib/baicommit/archives"))
}
