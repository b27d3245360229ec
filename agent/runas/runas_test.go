package runas

import (
	"fmt"
	"os"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/internal/identity"
)

func TestRuntimeDirEnv(t *testing.T) {
	// Only a directory that exists and belongs to the user is used.
	u := &identity.User{UID: os.Getuid()}
	if fi, err := os.Stat(fmt.Sprintf("/run/user/%d", u.UID)); err != nil || !fi.IsDir() {
		assert.Check(t, is.Len(RuntimeDirEnv(u), 0))
	}
	assert.Check(t, is.Len(RuntimeDirEnv(&identity.User{UID: 4242424}), 0))
}
