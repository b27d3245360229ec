// Package archivetest writes archives and their sidecars as a freeze
// would, for tests (and only tests: internal/deptest refuses it in any
// program).
package archivetest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/baicommit/baicommit/api"
)

// Sidecar is sc describing an archive named name+api.ArchiveSuffix that
// holds content: its name, sha256 and size filled in.
func Sidecar(name string, content []byte, sc api.Sidecar) api.Sidecar {
	sum := sha256.Sum256(content)
	sc.Archive, sc.SHA256, sc.Size = name+api.ArchiveSuffix, hex.EncodeToString(sum[:]), int64(len(content))
	return sc
}

// Write writes content as the archive dir/name.tar.gz and sc, completed
// by Sidecar, as its sidecar, both with mode 0640, creating dir if needed.
// It returns the archive's path.
func Write(t testing.TB, dir, name string, content []byte, sc api.Sidecar) string {
	t.Helper()
	assert.NilError(t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, name+api.ArchiveSuffix)
	assert.NilError(t, os.WriteFile(path, content, 0o640))
	b, err := json.Marshal(Sidecar(name, content, sc))
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(api.SidecarName(path), b, 0o640))
	return path
}

// Gzip compresses b, as archives are.
func Gzip(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	assert.NilError(t, err)
	assert.NilError(t, zw.Close())
	return buf.Bytes()
}
