package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// listModule runs `go list -deps` over the module with the Makefile's
// build tags and returns the module's packages.
func listModule(t *testing.T) []Package {
	t.Helper()
	root := filepath.Join("..", "..")
	tags, err := exec.Command("make", "-s", "--no-print-directory", "-C", root, "print-TEST_TAGS").Output()
	assert.NilError(t, err, "make print-TEST_TAGS")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "list", "-json=ImportPath,Imports,Deps", "-tags", strings.TrimSpace(string(tags)), "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	assert.NilError(t, err, "go list: %s", stderr.String())
	var pkgs []Package
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p Package
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		assert.NilError(t, err)
		pkgs = append(pkgs, p)
	}
	assert.Assert(t, len(pkgs) > 20, "go list found only %d packages", len(pkgs))
	return pkgs
}

// The tree as it is keeps every rule.
func TestLayout(t *testing.T) {
	for _, v := range Check(Rules, listModule(t)) {
		t.Error(v)
	}
}

// Each rule catches the import it is there for: the checker is tested on
// graphs with one forbidden edge each.
func TestCheckCatchesForbiddenImports(t *testing.T) {
	pkg := func(path string, deps ...string) Package {
		var full []string
		for _, d := range deps {
			full = append(full, Module+"/"+d)
		}
		return Package{ImportPath: Module + "/" + path, Imports: full, Deps: full}
	}
	for _, tc := range []struct {
		name string
		pkg  Package
		want string // "" means allowed
	}{
		{name: "the CLI imports agent code", pkg: pkg("client/cli", "agent/messages"), want: "client/cli must not import agent/messages"},
		{name: "the client imports policy", pkg: pkg("client/cli", "policy"), want: "client/cli must not import policy"},
		{name: "the CLI binary imports the manager", pkg: pkg("cmd/baicommit", "manager"), want: "cmd/baicommit must not import manager"},
		{name: "api imports anything of ours", pkg: pkg("api", "internal/httperr"), want: "api must not import internal/httperr"},
		{name: "the root side imports the file writers", pkg: pkg("agent", "internal/safefile"), want: "agent must not import internal/safefile"},
		{name: "the root side imports the owner side", pkg: pkg("agent/podman", "agent/asowner"), want: "agent/podman must not import agent/asowner"},
		{name: "the manager imports the agent", pkg: pkg("manager/webui", "agent"), want: "manager/webui must not import agent"},
		{name: "policy reads TOML", pkg: pkg("policy", "internal/config"), want: "policy must not import internal/config"},
		{name: "a program imports a test fixture", pkg: pkg("internal/restore", "internal/archivetest"), want: "internal/restore must not import internal/archivetest"},
		{name: "a program links the simulation", pkg: pkg("cmd/baicommit-agent", "test/scale/sim"), want: "cmd/baicommit-agent must not import test/scale/sim"},
		{name: "the agent links the simulation", pkg: pkg("agent", "test/scale/sim"), want: "agent must not import test/scale/sim"},
		{name: "the simulation links the agent", pkg: pkg("test/scale/sim", "agent", "internal/archives")},
		{name: "the owner side writes files", pkg: pkg("agent/asowner", "internal/safefile", "agent/messages")},
		{name: "the CLI uses the client", pkg: pkg("client/cli", "client", "api", "internal/restore")},
		{name: "the agent binary links both sides", pkg: pkg("cmd/baicommit-agent", "agent", "agent/asowner")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Check(Rules, []Package{tc.pkg})
			if tc.want == "" {
				assert.Check(t, is.Len(got, 0), "%q", got)
				return
			}
			assert.Assert(t, is.Len(got, 1), "%q", got)
			assert.Check(t, is.Contains(got[0], tc.want))
		})
	}
	// A fixture imported by a test is fine: tests' imports are not in
	// Imports, and only direct imports count for that rule.
	dep := Package{ImportPath: Module + "/internal/restore", Deps: []string{Module + "/internal/archivetest"}}
	assert.Check(t, is.Len(Check(Rules, []Package{dep}), 0))
}
