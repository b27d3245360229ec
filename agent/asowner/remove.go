package asowner

import (
	"errors"
	"fmt"
	"os"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/internal/layerstore"
	"github.com/baicommit/baicommit/internal/safefile"
)

// remove removes a task's temporary file from its save directory, if it
// is there (a directory that does not exist has nothing to remove), and
// its hold and temporary files in the layer store.
func remove(spec messages.Spec) error {
	if ls := spec.LayerStore; ls != nil {
		st, err := layerstore.Open(ls.Root, ls.Dir, false)
		if err == nil {
			err = st.RemoveTask(ls.Token)
			st.Close()
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
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
