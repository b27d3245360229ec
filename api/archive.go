package api

import "strings"

// File names of a freeze on the shared filesystem: the archive ends in
// ArchiveSuffix, and its sidecar is beside it under the same name with
// SidecarSuffix instead (SidecarName). This is the one place that says so.
const (
	ArchiveSuffix = ".tar.gz"
	SidecarSuffix = ".json"
)

// SidecarName is the name (or path) of the sidecar of the archive named
// archive.
func SidecarName(archive string) string {
	return strings.TrimSuffix(archive, ArchiveSuffix) + SidecarSuffix
}
