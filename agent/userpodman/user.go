// Package userpodman reaches a user's rootless Podman API from the root
// agent: the user's standard socket when it answers, otherwise a transient
// `podman system service` started as that user on a private socket, which
// exits by itself when idle.
package userpodman

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
)

// User is a local account the agent acts for.
type User struct {
	UID, GID int
	Name     string
	Home     string
	// Groups are the supplementary group ids.
	Groups []uint32
	// GroupNames are the names of all the user's groups.
	GroupNames []string
}

// ErrUnknownUser is returned by Lookup for a user the system does not know.
var ErrUnknownUser = errors.New("unknown user")

// Lookup finds a user by name or numeric uid.
func Lookup(nameOrUID string) (*User, error) {
	var u *user.User
	var err error
	if _, perr := strconv.Atoi(nameOrUID); perr == nil {
		u, err = user.LookupId(nameOrUID)
	} else {
		u, err = user.Lookup(nameOrUID)
	}
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrUnknownUser, nameOrUID, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("%w %q: uid %q", ErrUnknownUser, nameOrUID, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("%w %q: gid %q", ErrUnknownUser, nameOrUID, u.Gid)
	}
	out := &User{UID: uid, GID: gid, Name: u.Username, Home: u.HomeDir}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", u.Username, err)
	}
	for _, g := range gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			continue
		}
		out.Groups = append(out.Groups, uint32(n))
		if grp, err := user.LookupGroupId(g); err == nil {
			out.GroupNames = append(out.GroupNames, grp.Name)
		}
	}
	return out, nil
}

// Env is the minimal environment processes started as u get. Nothing of
// the agent's own environment leaks into them.
func (u *User) Env() []string {
	return []string{
		"HOME=" + u.Home,
		"USER=" + u.Name,
		"LOGNAME=" + u.Name,
		"PATH=/usr/local/bin:/usr/bin:/bin",
	}
}
