package asowner

import (
	"os/exec"
	"syscall"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/agent/messages"
)

func TestKill(t *testing.T) {
	cmd := exec.Command("sleep", "300")
	assert.NilError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill() })
	assert.NilError(t, kill(messages.Spec{Op: messages.OpKill, PID: cmd.Process.Pid}))
	err := cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	assert.Check(t, ok && ws.Signal() == syscall.SIGKILL, "%v", err)
	// Gone by now: not an error.
	assert.Check(t, kill(messages.Spec{Op: messages.OpKill, PID: cmd.Process.Pid}))
	for _, pid := range []int{0, 1, -1} {
		assert.Check(t, is.ErrorContains(kill(messages.Spec{Op: messages.OpKill, PID: pid}), "bad pid"))
	}
}
