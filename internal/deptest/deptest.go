// Package deptest keeps baicommit's layout honest: a test (deptest_test.go)
// lists what every package of the module imports and fails the build when
// a package imports what it must not, in the way Tailscale's
// tstest/deptest does. The rules are Rules; Check applies them to an
// import graph.
package deptest

import (
	"fmt"
	"slices"
	"strings"
)

// Module is baicommit's module path.
const Module = "github.com/baicommit/baicommit"

// Package is one package of the graph: what it imports directly (not in
// its tests) and everything it depends on.
type Package struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// Rule forbids the packages matching From to depend on those matching
// Not, transitively, or only directly when Direct is set.
type Rule struct {
	From, Not []string // module-relative patterns: "agent" or "agent/..."
	Direct    bool
	Why       string
}

// Rules are the boundaries of the layout.
var Rules = []Rule{
	{
		From: []string{"api", "client/..."}, Not: []string{"agent/...", "manager/...", "policy/..."},
		Why: "the public API and the CLI never link daemon code; the CLI reads its own configuration",
	},
	{
		From: []string{"cmd/baicommit", "cmd/baicommit-epilog"}, Not: []string{"agent/...", "manager/..."},
		Why: "the CLI and the epilog talk to the daemons over their APIs",
	},
	{
		From: []string{"api"}, Not: []string{"..."},
		Why: "the wire types depend on nothing of ours",
	},
	{
		From: []string{"agent", "agent/podman", "agent/runas", "agent/taskstore", "agent/messages"},
		Not:  []string{"agent/asowner/...", "internal/safefile/...", "internal/archives/...", "internal/layerstore/..."},
		Why:  "the root side never carries the code that reads or writes a user's files: only the owner-side helper does",
	},
	{
		From: []string{"agent/..."}, Not: []string{"manager/..."},
		Why: "agent and manager are separate daemons",
	},
	{
		From: []string{"manager/..."}, Not: []string{"agent/..."},
		Why: "agent and manager are separate daemons",
	},
	{
		From: []string{"policy/..."}, Not: []string{"internal/config/...", "agent/...", "manager/..."},
		Why: "policy decides; reading TOML is package config's job",
	},
	{
		From: []string{"..."}, Not: []string{"internal/archivetest/..."}, Direct: true,
		Why: "test fixtures are for tests only",
	},
	{
		From: []string{"api", "client/...", "agent/...", "manager/...", "policy/...", "internal/...", "cmd/..."},
		Not:  []string{"test/..."},
		Why:  "no program links test code (the simulation's fake Podman and helper live in test/scale/sim)",
	},
}

// match reports whether the module-relative path p matches pattern: the
// package itself, or with "/..." it and everything below it ("..." alone
// is the whole module).
func match(pattern, p string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

func matchAny(patterns []string, p string) bool {
	return slices.ContainsFunc(patterns, func(pat string) bool { return match(pat, p) })
}

// rel is the module-relative path of an import path, or "" outside it.
func rel(importPath string) string {
	if importPath == Module {
		return "."
	}
	r, ok := strings.CutPrefix(importPath, Module+"/")
	if !ok {
		return ""
	}
	return r
}

// Check applies rules to pkgs and returns one line per violation.
func Check(rules []Rule, pkgs []Package) []string {
	var out []string
	for _, p := range pkgs {
		from := rel(p.ImportPath)
		if from == "" {
			continue
		}
		for _, r := range rules {
			if !matchAny(r.From, from) {
				continue
			}
			deps := p.Deps
			if r.Direct {
				deps = p.Imports
			}
			for _, d := range deps {
				to := rel(d)
				if to == "" || to == from || !matchAny(r.Not, to) {
					continue
				}
				// A package may depend on itself's subpackages only when
				// a rule forbids the whole module (api → "...").
				out = append(out, fmt.Sprintf("%s must not import %s (%s)", from, to, r.Why))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
