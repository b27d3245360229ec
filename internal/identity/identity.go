// Package identity says who is calling and what they may do, for the agent
// and the manager alike: the local account behind a uid (with its groups),
// the proof a transport gives of the caller (a unix socket's peer
// credentials, a request's MUNGE credential, the manager's session
// signature on a request it relays to an agent), and the one rule of who is a
// baicommit admin. Like Tailscale's ipnauth, it is the only place either
// daemon learns identity from: never from a request's body or a header.
package identity

import (
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
)

// User is a local account.
type User struct {
	UID, GID int
	Name     string
	Home     string
	// Groups are the supplementary group ids.
	Groups []uint32
	// GroupNames are the names of all the user's groups.
	GroupNames []string
	// Group is the name of the user's primary group (empty if it has
	// none).
	Group string
}

// ErrUnknownUser is returned for a user the system does not know.
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
	return fromOS(u)
}

// LookupUID finds the account of uid.
func LookupUID(uid int) (*User, error) { return Lookup(strconv.Itoa(uid)) }

// LookupName finds an account by name only: a name that is all digits is
// not taken for a uid (an authenticating proxy names users, never uids).
func LookupName(name string) (*User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrUnknownUser, name, err)
	}
	return fromOS(u)
}

func fromOS(u *user.User) (*User, error) {
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("%w %q: uid %q", ErrUnknownUser, u.Username, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("%w %q: gid %q", ErrUnknownUser, u.Username, u.Gid)
	}
	out := &User{UID: uid, GID: gid, Name: u.Username, Home: u.HomeDir}
	if g, err := user.LookupGroupId(u.Gid); err == nil {
		out.Group = g.Name
	}
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

// Accounts finds users. System is the real one; tests of the daemons use
// a fixed table.
type Accounts interface {
	// Lookup finds a user by name or numeric uid (ErrUnknownUser if none).
	Lookup(nameOrUID string) (*User, error)
}

// System is the host's account database (NSS: files, LDAP, sssd).
type System struct{}

// Lookup is the package's Lookup.
func (System) Lookup(nameOrUID string) (*User, error) { return Lookup(nameOrUID) }

// Admins is the site's rule of who may act on anyone's sessions, as
// agent.toml and manager.toml name them.
type Admins struct {
	// Users are admins by name.
	Users []string `toml:"admins"`
	// Groups make their members admins.
	Groups []string `toml:"admin_groups"`
}

// Admin reports whether u is an admin: root, a user named in Users, or a
// member of one of Groups.
func (a Admins) Admin(u *User) bool {
	if u == nil {
		return false
	}
	return u.UID == 0 || slices.Contains(a.Users, u.Name) ||
		slices.ContainsFunc(u.GroupNames, func(g string) bool { return slices.Contains(a.Groups, g) })
}

// Caller is who sent a request, as a transport proved it.
type Caller struct {
	UID int
	// User is the account of UID; nil when the uid has none here.
	User *User
	// Admin says the caller may act on anyone's sessions (Admins.Admin).
	Admin bool
	// Relayed says the request came through baicommit-manager, which
	// proved UID to itself and signed the request it relayed with the
	// session it opened with the agent (FromSession).
	Relayed bool
}

// NewCaller is the caller with uid, as accounts and the admin rule see it.
func NewCaller(accounts Accounts, admins Admins, uid int) Caller {
	c := Caller{UID: uid}
	if u, err := accounts.Lookup(strconv.Itoa(uid)); err == nil {
		c.User = u
		c.Admin = admins.Admin(u)
	}
	return c
}

// Name is the caller's user name, or its uid when it has no account.
func (c Caller) Name() string {
	if c.User != nil {
		return c.User.Name
	}
	return strconv.Itoa(c.UID)
}

// MayActFor reports whether the caller may act on the sessions of owner (a
// user name or uid; empty means the caller's own): their own, or anyone's
// for an admin.
func (c Caller) MayActFor(owner string) bool {
	return owner == "" || owner == strconv.Itoa(c.UID) || (c.User != nil && owner == c.User.Name) || c.Admin
}
