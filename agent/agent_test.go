package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/fs"

	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/internal/units"
	"github.com/baicommit/baicommit/policy"
)

// builtinScrubEnv is policy.DefaultScrubEnv as the source declares it.
var builtinScrubEnv = []string{
	"*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*", "*_PASS",
	"*_KEY", "*_KEYS", "*PRIVATE_KEY*", "*API_KEY*", "*CREDENTIAL*", "AWS_*", "MUNGE_*",
}

// writeConfig writes an agent.toml for LoadConfig. LoadConfig can write
// into policy.DefaultScrubEnv (see TestLoadConfigLeavesDefaultsAlone), so
// it is restored after each test that loads a file.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	saved := slices.Clone(policy.DefaultScrubEnv)
	t.Cleanup(func() { policy.DefaultScrubEnv = saved })
	dir := fs.NewDir(t, "agent", fs.WithFile("agent.toml", body))
	return dir.Join("agent.toml")
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "node_name = \"n01\"\n"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cfg.NodeName, "n01"))
	assert.Check(t, is.Equal(cfg.StateDir, "/var/lib/baicommit"))
	assert.Check(t, is.Equal(cfg.RunDir, "/run/baicommit/users"))
	assert.Check(t, is.Equal(cfg.IdleExit.Duration, 60*time.Second))
	assert.Check(t, is.Equal(cfg.TransientServiceIdle.Duration, 300*time.Second))
	assert.Check(t, is.Equal(cfg.Podman, "/usr/bin/podman"))
	assert.Check(t, is.Equal(cfg.SavePath, "/var/lib/baicommit/archives/{user}"))
	assert.Check(t, is.DeepEqual(cfg.SaveRoots, []string{"/var/lib/baicommit/archives"}))
	assert.Check(t, is.Equal(cfg.FileName, "{container}-{time}-{job}-{node}-{task}"))
	assert.Check(t, is.Equal(cfg.ArchiveMode, "0600"))
	assert.Check(t, is.Equal(cfg.CompressionLevel, 1))
	assert.Check(t, !cfg.KeepImage)
	assert.Check(t, is.DeepEqual(cfg.ScrubEnv, builtinScrubEnv))
	assert.Check(t, is.Len(cfg.Admins.Users, 0))
	assert.Check(t, is.Len(cfg.Admins.Groups, 0))
}

func TestLoadConfigNoFile(t *testing.T) {
	host, err := os.Hostname()
	assert.NilError(t, err)
	host, _, _ = strings.Cut(host, ".")
	if !policy.Safe(host) {
		t.Skipf("host name %q is not a valid node_name", host)
	}
	cfg, err := LoadConfig("")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cfg.NodeName, host))
	assert.Check(t, is.DeepEqual(cfg.Policy.ScrubEnv, builtinScrubEnv))
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.toml"))
	assert.Check(t, errors.Is(err, os.ErrNotExist), "got %v", err)
}

func TestLoadConfigAllKeys(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, `
node_name = "gpu-07"
state_dir = "/srv/state"
run_dir = "/run/bc"
podman = "/opt/podman/bin/podman"
idle_exit = "90s"
transient_service_idle = "2m30s"
save_path = "/shared/{user}/frozen/{job}"
file_name = "{user}-{container}-{task}"
archive_mode = "0600"
keep_image = true
compression_level = 6
scrub_env = ["*TOKEN*", "HF_*"]
admins = ["carol"]
admin_groups = ["hpcadmin"]
`))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cfg.NodeName, "gpu-07"))
	assert.Check(t, is.Equal(cfg.StateDir, "/srv/state"))
	assert.Check(t, is.Equal(cfg.RunDir, "/run/bc"))
	assert.Check(t, is.Equal(cfg.Podman, "/opt/podman/bin/podman"))
	assert.Check(t, is.Equal(cfg.IdleExit.Duration, 90*time.Second))
	assert.Check(t, is.Equal(cfg.TransientServiceIdle.Duration, 150*time.Second))
	assert.Check(t, is.Equal(cfg.SavePath, "/shared/{user}/frozen/{job}"))
	assert.Check(t, is.DeepEqual(cfg.SaveRoots, []string{"/shared"}))
	assert.Check(t, is.Equal(cfg.FileName, "{user}-{container}-{task}"))
	mode, err := cfg.Mode()
	assert.NilError(t, err)
	assert.Check(t, is.Equal(mode, uint32(0o600)))
	assert.Check(t, cfg.KeepImage)
	assert.Check(t, is.Equal(cfg.CompressionLevel, 6))
	assert.Check(t, is.DeepEqual(cfg.ScrubEnv, []string{"*TOKEN*", "HF_*"}))
	assert.Check(t, cfg.Admin(&identity.User{UID: 1002, Name: "carol"}))
	assert.Check(t, cfg.Admin(&identity.User{UID: 1003, Name: "dave", GroupNames: []string{"hpcadmin"}}))
	assert.Check(t, !cfg.Admin(&identity.User{UID: 1003, Name: "dave", GroupNames: []string{"users"}}))
}

func TestLoadConfigSaveRoots(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, `
node_name = "n01"
save_path = "/shared/baicommit/{user}"
save_roots = ["/shared/", "/scratch"]
`))
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(cfg.SaveRoots, []string{"/shared", "/scratch"}))
}

// Loading a configuration must not change the built-in defaults that the
// next load (or the manager, in the same process) starts from.
func TestLoadConfigLeavesDefaultsAlone(t *testing.T) {
	_, err := LoadConfig(writeConfig(t, "node_name = \"n01\"\nscrub_env = [\"FOO\"]\n"))
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(policy.DefaultScrubEnv, builtinScrubEnv))
	cfg, err := LoadConfig(writeConfig(t, "node_name = \"n01\"\n"))
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(cfg.ScrubEnv, builtinScrubEnv))
}

func TestLoadConfigUnknownKey(t *testing.T) {
	for _, key := range []string{"save_pth", "keep_images", "scrub-env"} {
		_, err := LoadConfig(writeConfig(t, "node_name = \"n01\"\n"+key+" = \"x\"\n"))
		assert.Check(t, err != nil, "%s accepted", key)
	}
}

// An admin who misspells a key, or gives a key a value of the wrong form,
// needs to be told which key.
func TestLoadConfigErrorsNameTheKey(t *testing.T) {
	for key, body := range map[string]string{
		"save_pth":    "save_pth = \"x\"",
		"keep_images": "keep_images = true",
		"idle_exit":   "idle_exit = \"90\"",
	} {
		_, err := LoadConfig(writeConfig(t, "node_name = \"n01\"\n"+body+"\n"))
		assert.ErrorContains(t, err, key)
	}
}

func TestLoadConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"node_name with slash", `node_name = "../etc"`, "node_name"},
		{"node_name with dash first", `node_name = "-n01"`, "node_name"},
		{"node_name with space", `node_name = "n 01"`, "node_name"},
		{"node_name empty", `node_name = ""`, "node_name"},
		{"node_name dot", `node_name = "."`, "node_name"},
		{"duration without unit", "node_name = \"n01\"\nidle_exit = \"90\"", ""},
		{"duration as number", "node_name = \"n01\"\nidle_exit = 90", ""},
		{"service idle too short", "node_name = \"n01\"\ntransient_service_idle = \"500ms\"", "transient_service_idle"},
		{"empty state_dir", "node_name = \"n01\"\nstate_dir = \"\"", "state_dir"},
		{"empty run_dir", "node_name = \"n01\"\nrun_dir = \"\"", "run_dir"},
		{"level as string", "node_name = \"n01\"\ncompression_level = \"9\"", ""},
		{"level out of range", "node_name = \"n01\"\ncompression_level = 0", "compression_level"},
		{"bad archive_mode", "node_name = \"n01\"\narchive_mode = \"0777x\"", "archive_mode"},
		{"archive_mode as number", "node_name = \"n01\"\narchive_mode = 0640", ""},
		{"relative save_path", "node_name = \"n01\"\nsave_path = \"archives/{user}\"", "save_path"},
		{"bad scrub pattern", "node_name = \"n01\"\nscrub_env = [\"[\"]", "scrub_env"},
		{"file_name with slash", "node_name = \"n01\"\nfile_name = \"{user}/{task}\"", "file_name"},
		{"not toml", "node_name = ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, tc.body+"\n"))
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func exampleConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../agent.toml.example")
	assert.NilError(t, err)
	// The example leaves node_name to the host name; pin it.
	return writeConfig(t, "node_name = \"n01\"\n"+string(b))
}

// The shipped example is installed as /etc/baicommit/agent.toml by
// `make install`: it must load.
func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadConfig(exampleConfig(t))
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(cfg.SaveRoots, []string{"/shared/baicommit"}))
	assert.Check(t, is.Equal(cfg.ArchiveMode, "0600"))
}

// The example's limits and timeouts are the defaults it says they are.
func TestExampleConfigLimitsAreDefaults(t *testing.T) {
	cfg, err := LoadConfig(exampleConfig(t))
	assert.NilError(t, err)
	def := DefaultConfig()
	assert.NilError(t, def.Validate())
	assert.Check(t, is.Equal(cfg.MaxRunningPerUser, 1))
	assert.Check(t, is.Equal(cfg.MaxRunningPerUser, def.MaxRunningPerUser))
	assert.Check(t, is.Equal(cfg.MaxQueuedPerUser, def.MaxQueuedPerUser))
	assert.Check(t, is.Equal(cfg.TaskTimeout, def.TaskTimeout))
	assert.Check(t, is.Equal(cfg.PodmanTimeout, def.PodmanTimeout))
	assert.Check(t, is.Equal(cfg.TaskRetention, def.TaskRetention))
	assert.Check(t, is.Equal(cfg.MaxTasksPerUser, def.MaxTasksPerUser))
	assert.Check(t, is.Equal(cfg.RequestTimeout, def.RequestTimeout))
	assert.Check(t, is.Equal(cfg.IdleConnectionTimeout, def.IdleConnectionTimeout))
	assert.Check(t, is.Equal(cfg.MaxConnectionsPerUser, def.MaxConnectionsPerUser))
	assert.Check(t, is.DeepEqual(cfg.UserCgroups, def.UserCgroups))
	assert.Check(t, is.Equal(cfg.HelperThreads, def.HelperThreads))
}

// The storage examples the file shows commented out are valid as written.
func TestExampleConfigStorageExamplesLoad(t *testing.T) {
	b, err := os.ReadFile("../agent.toml.example")
	assert.NilError(t, err)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, key := range []string{"quota", "max_freeze_size", "retention"} {
			if strings.HasPrefix(l, "# "+key+" = ") {
				lines = append(lines, strings.TrimPrefix(l, "# "))
			}
		}
	}
	assert.Assert(t, is.Len(lines, 3), "%q", lines)
	cfg, err := LoadConfig(writeConfig(t, "node_name = \"n01\"\n"+strings.Join(lines, "\n")+"\n"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cfg.Quota.MaxArchives, 20))
	assert.Check(t, is.Equal(cfg.Quota.Groups["proj42"].MaxBytes, units.Size(5<<40)))
	assert.Check(t, is.Equal(cfg.MaxFreezeSize, units.Size(100<<30)))
	assert.Check(t, is.Equal(cfg.Retention.KeepYoungerThan.Duration, 14*24*time.Hour))
}

// The example says its values are the defaults; its scrub_env drops
// MUNGE_* from the built-in list, so installing it scrubs less.
func TestExampleConfigScrubsDefaults(t *testing.T) {
	cfg, err := LoadConfig(exampleConfig(t))
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(cfg.ScrubEnv, builtinScrubEnv))
}

func TestDurationText(t *testing.T) {
	var d Duration
	assert.NilError(t, d.UnmarshalText([]byte("1h2m3s")))
	assert.Check(t, is.Equal(d.Duration, time.Hour+2*time.Minute+3*time.Second))
	b, err := d.MarshalText()
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(b), "1h2m3s"))
	assert.Check(t, d.UnmarshalText([]byte("soon")) != nil)
}

var now = time.Date(2024, 3, 5, 6, 8, 9, 0, time.UTC)

func TestImageNameDefault(t *testing.T) {
	for container, want := range map[string]string{
		"box":          "localhost/baicommit/box:20240305-060809",
		"My.Box":       "localhost/baicommit/my-box:20240305-060809",
		"UPPER_case":   "localhost/baicommit/upper-case:20240305-060809",
		"a+b":          "localhost/baicommit/a-b:20240305-060809",
		"a..b":         "localhost/baicommit/a-b:20240305-060809",
		"a__b":         "localhost/baicommit/a-b:20240305-060809",
		"--x--":        "localhost/baicommit/x:20240305-060809",
		"_x_":          "localhost/baicommit/x:20240305-060809",
		".jupyter":     "localhost/baicommit/jupyter:20240305-060809",
		"___":          "localhost/baicommit/session:20240305-060809",
		"":             "localhost/baicommit/session:20240305-060809",
		"été":          "localhost/baicommit/t:20240305-060809",
		"0123456789ab": "localhost/baicommit/0123456789ab:20240305-060809",
	} {
		got, err := imageName("", container, now)
		assert.Check(t, err, "container %q", container)
		assert.Check(t, is.Equal(got, want), "container %q", container)
	}
}

// Every container name Podman accepts ([a-zA-Z0-9][a-zA-Z0-9_.-]*) must
// give a usable default image name: the user gave no name, so an "invalid
// image name" error is nothing they can fix.
func TestImageNameDefaultFromAnyContainerName(t *testing.T) {
	for _, container := range []string{"a___b", "a_-b", "a._b", "a-_b", "x_.y"} {
		got, err := imageName("", container, now)
		assert.Check(t, err, "container %q", container)
		assert.Check(t, strings.HasPrefix(got, "localhost/baicommit/"), "container %q: %q", container, got)
	}
}

func TestImageNameGiven(t *testing.T) {
	for want, in := range map[string]string{
		"docker.io/library/foo:latest":   "foo",
		"docker.io/library/foo:v1":       "foo:v1",
		"docker.io/alice/foo:latest":     "alice/foo",
		"localhost/foo:latest":           "localhost/foo",
		"localhost/baicommit/x:1.0":      "localhost/baicommit/x:1.0",
		"quay.io/org/img:tag_1":          "quay.io/org/img:tag_1",
		"registry:5000/team/img:latest":  "registry:5000/team/img",
		"docker.io/library/a-b.c_d:TAG.": "a-b.c_d:TAG.",
	} {
		got, err := imageName(in, "box", now)
		assert.Check(t, err, "%q", in)
		assert.Check(t, is.Equal(got, want), "%q", in)
	}
}

func TestImageNameRefused(t *testing.T) {
	dgst := "sha256:" + strings.Repeat("ab", 32)
	for _, in := range []string{
		"Foo", "foo bar", "foo:", ":tag", "foo:-tag", "/foo", "foo//bar", "a___b", "foo:" + strings.Repeat("t", 129),
		"foo@" + dgst, "foo:v1@" + dgst, "quay.io/a/b@" + dgst, "foo@sha256:short",
	} {
		got, err := imageName(in, "box", now)
		var e *Error
		assert.Check(t, errors.As(err, &e), "%q gave %q, %v", in, got, err)
		if e != nil {
			assert.Check(t, is.Equal(e.Kind, KindInvalid), "%q", in)
			assert.Check(t, is.Contains(e.Msg, in), "%q", in)
		}
		assert.Check(t, is.Equal(Status(err), http.StatusBadRequest), "%q", in)
		assert.Check(t, is.Equal(got, ""), "%q", in)
	}
}

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{&Error{Kind: KindInvalid}, http.StatusBadRequest},
		{&Error{Kind: KindForbidden}, http.StatusForbidden},
		{&Error{Kind: KindNotFound}, http.StatusNotFound},
		{&Error{Kind: KindConflict}, http.StatusConflict},
		{&Error{Kind: KindUnavailable}, http.StatusServiceUnavailable},
		{&Error{Kind: KindUnauthorized}, http.StatusUnauthorized},
		{&Error{Kind: KindInternal}, http.StatusInternalServerError},
		{&Error{Kind: Kind(99)}, http.StatusInternalServerError},
		{errors.New("plain"), http.StatusInternalServerError},
		{io.EOF, http.StatusInternalServerError},
		// Wrapped errors keep their kind.
		{fmt.Errorf("while freezing: %w", &Error{Kind: KindConflict}), http.StatusConflict},
		{errors.Join(errors.New("x"), &Error{Kind: KindForbidden}), http.StatusForbidden},
	} {
		assert.Check(t, is.Equal(Status(tc.err), tc.want), "%#v", tc.err)
	}
}

func TestUserErr(t *testing.T) {
	e := userErr(KindNotFound, "no task %q: %w", "x", io.EOF)
	assert.Check(t, is.Equal(e.Error(), `no task "x": EOF`))
	assert.Check(t, is.Equal(e.Kind, KindNotFound))
	assert.Check(t, errors.Is(e, io.EOF))
	assert.Check(t, is.Equal(Status(e), http.StatusNotFound))

	e = userErr(KindInvalid, "bad %v", io.EOF)
	assert.Check(t, is.Equal(e.Error(), "bad EOF"))
	assert.Check(t, !errors.Is(e, io.EOF)) // %v does not wrap
}

func TestActivity(t *testing.T) {
	a := NewActivity()
	start := time.Now()
	assert.Check(t, a.IdleFor(start.Add(time.Minute)) >= time.Minute)

	a.Begin()
	a.Begin()
	assert.Check(t, is.Equal(a.IdleFor(start.Add(time.Hour)), time.Duration(0)))
	a.End()
	assert.Check(t, is.Equal(a.IdleFor(start.Add(time.Hour)), time.Duration(0)), "still one in flight")

	before := time.Now()
	a.End()
	after := time.Now()
	later := after.Add(5 * time.Second)
	idle := a.IdleFor(later)
	assert.Check(t, idle >= 5*time.Second && idle <= later.Sub(before), "idle %v", idle)
	assert.Check(t, a.IdleFor(later.Add(time.Minute)) > idle, "grows")

	// Busy again: 0, whatever the clock says.
	a.Begin()
	assert.Check(t, is.Equal(a.IdleFor(later.Add(time.Hour)), time.Duration(0)))
	a.End()
}

func TestTaskID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{12}\.n01$`)
	seen := map[string]bool{}
	for range 100 {
		id := newTaskID("n01")
		assert.Check(t, re.MatchString(id), "%q", id)
		assert.Check(t, !seen[id], "duplicate %q", id)
		seen[id] = true
		tok := taskToken(id)
		assert.Check(t, is.Equal(tok, id[:12]))
		assert.Check(t, policy.Safe(tok))
	}
	// A node name with dots: the token is still the random part only.
	id := newTaskID("gpu.cluster")
	assert.Check(t, regexp.MustCompile(`^[0-9a-f]{12}\.gpu\.cluster$`).MatchString(id), "%q", id)
	assert.Check(t, is.Equal(taskToken(id), id[:12]))

	for in, want := range map[string]string{
		"0123456789ab.n01": "0123456789ab",
		"0123456789ab":     "0123456789ab",
		"":                 "",
		".n01":             "",
		"abc.def.ghi":      "abc",
	} {
		assert.Check(t, is.Equal(taskToken(in), want), "%q", in)
	}
}

func TestCallerName(t *testing.T) {
	assert.Check(t, is.Equal(Caller{UID: 1234}.Name(), "1234"))
}
