package asowner

import (
	"os"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/internal/safefile"
)

// prepareDir makes the save directory spec.Dir below spec.Root as the
// owner, with the host's view of who owns each directory on the way
// (safefile.MakeDir's rules), before a helper in the owner's user
// namespace writes there: in that namespace root's directories and other
// users' look alike.
func prepareDir(spec messages.Spec) error {
	mode := os.FileMode(spec.Mode)
	if mode == 0 {
		mode = 0o600
	}
	d, err := safefile.MakeDir(spec.Root, spec.Dir, safefile.DirModeFor(mode))
	if err != nil {
		return err
	}
	return d.Close()
}
