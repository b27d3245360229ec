// Package version is baicommit's version, set once at build time by the
// Makefile for all four binaries:
//
//	go build -ldflags "-X github.com/baicommit/baicommit/internal/version.Version=$(VERSION)"
//
// Agents and the manager report it in /v1/version; every binary prints it
// with --version.
package version

// Version is the release, or "git describe" of the tree it was built
// from; "dev" when built without the Makefile's -ldflags.
var Version = "dev"
