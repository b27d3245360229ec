package asowner

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/agent/messages"
)

// kill ends spec.PID. It runs with the owner's credentials on the host, so
// the kernel lets it signal the owner's processes (their rootless user
// namespace included: they own it) and nobody else's, whatever pid the
// owner's Podman reported.
func kill(spec messages.Spec) error {
	if spec.PID <= 1 {
		return fmt.Errorf("kill: bad pid %d", spec.PID)
	}
	err := unix.Kill(spec.PID, unix.SIGKILL)
	if errors.Is(err, unix.ESRCH) {
		return nil // it ended meanwhile
	}
	if err != nil {
		return fmt.Errorf("kill process %d: %w", spec.PID, err)
	}
	return nil
}
