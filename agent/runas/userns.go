package runas

import (
	"fmt"
	"strconv"
	"syscall"

	"go.podman.io/storage/pkg/idtools"

	"github.com/baicommit/baicommit/internal/identity"
)

// Namespace returns process attributes that start a process as u
// inside a new user namespace mapped the way u's rootless Podman maps its
// own: 0 is u, 1… are u's subordinate ids from /etc/subuid and
// /etc/subgid. In it the process can read every file of u's image store,
// and on the host it acts as u and nobody else. u's supplementary groups
// are mapped above the subordinate range and kept, so group permissions on
// the save location still work. The returned environment tells
// containers/storage that it already runs in u's namespace.
//
// The agent (root) writes the mappings itself, so no setuid newuidmap and
// no intermediate process are needed.
func Namespace(u *identity.User) (*syscall.SysProcAttr, []string, error) {
	ids, err := idtools.NewIDMappings(u.Name, u.Name)
	if err != nil {
		return nil, nil, fmt.Errorf("subordinate ids of %s: %w", u.Name, err)
	}
	uids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: u.UID, Size: 1}}
	next := 1
	for _, m := range ids.UIDs() {
		uids = append(uids, syscall.SysProcIDMap{ContainerID: next, HostID: m.HostID, Size: m.Size})
		next += m.Size
	}
	gids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: u.GID, Size: 1}}
	next = 1
	for _, m := range ids.GIDs() {
		gids = append(gids, syscall.SysProcIDMap{ContainerID: next, HostID: m.HostID, Size: m.Size})
		next += m.Size
	}
	var groups []uint32
	for _, g := range u.Groups {
		if mapped(gids, int(g)) {
			continue // the primary group, or (oddly) inside the subordinate range
		}
		gids = append(gids, syscall.SysProcIDMap{ContainerID: next, HostID: int(g), Size: 1})
		groups = append(groups, uint32(next))
		next++
	}
	attr := &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                uids,
		GidMappings:                gids,
		GidMappingsEnableSetgroups: true,
		Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: groups},
	}
	env := []string{
		"_CONTAINERS_USERNS_CONFIGURED=1",
		"_CONTAINERS_ROOTLESS_UID=" + strconv.Itoa(u.UID),
		"_CONTAINERS_ROOTLESS_GID=" + strconv.Itoa(u.GID),
	}
	return attr, env, nil
}

func mapped(m []syscall.SysProcIDMap, hostID int) bool {
	for _, r := range m {
		if hostID >= r.HostID && hostID < r.HostID+r.Size {
			return true
		}
	}
	return false
}
