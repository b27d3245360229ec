package asowner

import (
	"errors"
	"fmt"
	"os"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/internal/safefile"
)

// remove removes a task's temporary file from its save directory, if it
// is there; a directory that does not exist has nothing to remove.
func remove(spec messages.Spec) error {
	dir, err := safefile.OpenDir(spec.Root, spec.Dir, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	if !safefile.ValidTemp(spec.Temp) {
		return fmt.Errorf("%w: %q is not a temporary name", safefile.ErrUnsafePath, spec.Temp)
	}
	return safefile.Remove(dir, spec.Temp)
}
