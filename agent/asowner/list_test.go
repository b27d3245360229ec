package asowner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baicommit/baicommit/agent/messages"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archivetest"
)

// freezeFile writes an archive and its sidecar as a freeze would.
func freezeFile(t *testing.T, dir, name string, uid int, created time.Time) string {
	t.Helper()
	return archivetest.Write(t, dir, name, []byte(name), api.Sidecar{UID: uid, Created: created})
}

func TestRunList(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	me := os.Getuid()
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, dir string)
		limit    int
		want     []string // archive names, in order
		warnings []string // parts of the warnings, in order
		err      string
	}{
		{name: "nothing frozen yet: no directory", want: nil},
		{
			name: "newest first, mine only",
			setup: func(t *testing.T, dir string) {
				freezeFile(t, dir, "old", me, t0)
				freezeFile(t, filepath.Join(dir, "2025-03-02"), "new", me, t0.Add(time.Hour))
				freezeFile(t, dir, "someone-elses", me+1, t0.Add(2*time.Hour))
			},
			want: []string{"new.tar.gz", "old.tar.gz"},
		},
		{
			name: "a planted sidecar link is not followed",
			setup: func(t *testing.T, dir string) {
				real := freezeFile(t, dir, "real", me, t0)
				other := t.TempDir()
				// Another directory's sidecar that claims the archive here.
				b, err := os.ReadFile(strings.TrimSuffix(real, ".tar.gz") + ".json")
				assert.NilError(t, err)
				assert.NilError(t, os.WriteFile(filepath.Join(other, "x.json"), b, 0o644))
				assert.NilError(t, os.Symlink(filepath.Join(other, "x.json"), filepath.Join(dir, "planted.json")))
			},
			want: []string{"real.tar.gz"},
		},
		{
			name: "cut at the limit, and said so",
			setup: func(t *testing.T, dir string) {
				for i, n := range []string{"a", "b", "c"} {
					freezeFile(t, dir, n, me, t0.Add(time.Duration(i)*time.Minute))
				}
			},
			limit:    2,
			want:     []string{"c.tar.gz", "b.tar.gz"},
			warnings: []string{"only the newest 2 of 3 archives"},
		},
		{
			name: "a broken sidecar is a warning",
			setup: func(t *testing.T, dir string) {
				freezeFile(t, dir, "good", me, t0)
				assert.NilError(t, os.WriteFile(filepath.Join(dir, "junk.json"), []byte("{"), 0o644))
			},
			want:     []string{"good.tar.gz"},
			warnings: []string{"junk.json is not a baicommit sidecar"},
		},
		{
			name:  "not a directory",
			setup: func(t *testing.T, dir string) { assert.NilError(t, os.WriteFile(dir, nil, 0o644)) },
			err:   "is not a directory",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "alice")
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			var got, warnings []string
			done := 0
			err := Run(context.Background(), messages.Spec{Op: messages.OpList, Dir: dir, Limit: tc.limit}, func(ev messages.Event) {
				switch ev.Event {
				case messages.EventArchive:
					assert.Check(t, is.Equal(ev.Archive.Path, filepath.Join(filepath.Dir(ev.Archive.SidecarFile), ev.Archive.Archive)))
					got = append(got, ev.Archive.Archive)
				case messages.EventWarning:
					warnings = append(warnings, ev.Message)
				case messages.EventDone:
					done++
				}
			})
			if tc.err != "" {
				assert.Check(t, is.ErrorContains(err, tc.err))
				assert.Check(t, is.Equal(done, 0))
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(got, tc.want))
			assert.Check(t, is.Equal(done, 1), "one done event, last")
			assert.Assert(t, is.Len(warnings, len(tc.warnings)), "%q", warnings)
			for i, w := range tc.warnings {
				assert.Check(t, is.Contains(warnings[i], w))
			}
		})
	}
}
