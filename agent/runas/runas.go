// Package runas starts processes as a user on the root agent's behalf:
// with the user's credentials and a minimal environment of their own, or
// inside their rootless user namespace, mapped exactly as their Podman maps
// it. It is the root side of the boundary; what runs on the other side is
// package asowner.
package runas

import (
	"fmt"
	"os"
	"syscall"

	"github.com/baicommit/baicommit/internal/identity"
)

// Env is the minimal environment processes started as u get. Nothing of
// the agent's own environment leaks into them.
func Env(u *identity.User) []string {
	return []string{
		"HOME=" + u.Home,
		"USER=" + u.Name,
		"LOGNAME=" + u.Name,
		"PATH=/usr/local/bin:/usr/bin:/bin",
	}
}

// RuntimeDirEnv points XDG_RUNTIME_DIR at u's /run/user/UID when it
// exists and is u's: `podman login` keeps its auth file there.
func RuntimeDirEnv(u *identity.User) []string {
	dir := fmt.Sprintf("/run/user/%d", u.UID)
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != u.UID {
		return nil
	}
	return []string{"XDG_RUNTIME_DIR=" + dir}
}

// Credentials are process attributes that run a process as u: u's uid,
// primary gid and supplementary groups.
func Credentials(u *identity.User) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: u.Groups},
	}
}
