package asowner

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/internal/units"
	"github.com/baicommit/baicommit/policy"
)

// quotaError is a freeze refused before anything was written: it would
// pass a quota, the freeze size limit, or the free space of the save
// location. Its message says the usage, the limit and what to do.
type quotaError struct{ msg string }

func (e *quotaError) Error() string { return e.msg }

func quotaErrorf(format string, args ...any) error {
	return &quotaError{msg: fmt.Sprintf(format, args...) + "; nothing was written"}
}

// whatToDo is how a user makes room.
const whatToDo = "remove archives you no longer need with `baicommit rm ARCHIVE…` (see `baicommit usage` and `baicommit list`), or apply the retention rules with `baicommit prune`"

// destination is a directory a freeze writes into and the most it writes
// there.
type destination struct {
	dir  *os.File
	name string
	need int64
}

// checkLimits refuses a freeze whose changes are changes bytes and that
// writes at most what dests say (the uncompressed sizes: upper bounds),
// when it would pass a limit of q or the free space of a destination.
// Destinations on one filesystem share its free space.
func checkLimits(q *messages.QuotaCheck, changes int64, dests ...destination) error {
	var total int64
	for _, d := range dests {
		total += d.need
	}
	if q != nil {
		if m := q.Quotas.MaxFreezeSize; m > 0 && changes > m {
			return quotaErrorf("the session's changes are %s, and this site freezes at most %s (max_freeze_size): make the session smaller (remove caches, or leave paths out with --exclude) and freeze again",
				units.Human(changes), units.Human(m))
		}
		u, lim := q.Usage, q.Quotas.User
		if lim.MaxArchives > 0 && u.Archives+1 > lim.MaxArchives {
			return quotaErrorf("you keep %d archives (%s) below %s, and your quota is %d archives: %s", u.Archives, units.Human(u.Bytes), u.Dir, lim.MaxArchives, whatToDo)
		}
		if lim.MaxBytes > 0 && u.Bytes+total > lim.MaxBytes {
			return quotaErrorf("this freeze needs up to %s (its uncompressed size) and you keep %s in %d archives below %s, but your quota is %s: %s",
				units.Human(total), units.Human(u.Bytes), u.Archives, u.Dir, units.Human(lim.MaxBytes), whatToDo)
		}
		for _, g := range u.Groups {
			if g.Quota.MaxArchives > 0 && g.Archives+1 > g.Quota.MaxArchives {
				return quotaErrorf("group %s keeps %d archives (%s) below %s, and its quota is %d archives: %s", g.Group, g.Archives, units.Human(g.Bytes), g.Dir, g.Quota.MaxArchives, whatToDo)
			}
			if g.Quota.MaxBytes > 0 && g.Bytes+total > g.Quota.MaxBytes {
				return quotaErrorf("this freeze needs up to %s (its uncompressed size) and group %s keeps %s in %d archives below %s, but its quota is %s: %s",
					units.Human(total), g.Group, units.Human(g.Bytes), g.Archives, g.Dir, units.Human(g.Quota.MaxBytes), whatToDo)
			}
		}
	}
	type fs struct {
		free, need int64
		name       string
	}
	byFS := map[unix.Fsid]*fs{}
	var order []unix.Fsid
	for _, d := range dests {
		var st unix.Statfs_t
		if d.dir == nil || unix.Fstatfs(int(d.dir.Fd()), &st) != nil {
			continue
		}
		f := byFS[st.Fsid]
		if f == nil {
			f = &fs{free: int64(st.Bavail) * st.Bsize, name: d.name}
			byFS[st.Fsid] = f
			order = append(order, st.Fsid)
		}
		f.need += d.need
	}
	for _, id := range order {
		if f := byFS[id]; f.free < f.need {
			return quotaErrorf("the save location %s has %s free, and this freeze needs up to %s (its uncompressed size): free space there, or ask your site's admins",
				f.name, units.Human(f.free), units.Human(f.need))
		}
	}
	return nil
}

// UserExcludeFile is where a user lists paths left out of their freezes,
// below their home: one absolute glob a line, # starts a comment.
const UserExcludeFile = ".config/baicommit/exclude"

// userExcludes reads the caller's exclude file (none: no patterns).
func userExcludes() ([]string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, nil
	}
	path := filepath.Join(home, UserExcludeFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read your exclusion file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if err := policy.ValidExclude(fmt.Sprintf("%s line %d:", path, line), []string{p}); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, sc.Err()
}
