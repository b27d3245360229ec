package websession

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Revocations are sessions that signed out before they expired: a cookie
// copied before its sign-out must not work after it. A manager keeps them
// in memory; replicas that share Dir (a directory on a filesystem they all
// see) honour each other's, each revoked session being one empty file
// whose modification time is the session's expiry.
type Revocations struct {
	dir string

	mu     sync.Mutex
	ids    map[string]time.Time // session id → expiry
	pruned time.Time
}

// pruneEvery is how often expired revocations are forgotten.
const pruneEvery = time.Hour

// NewRevocations returns revocations kept in memory and, when dir is not
// empty, in dir, which must be a directory only its owner (this process's
// account) can write to: anyone else could sign everyone out, or hide a
// revocation.
func NewRevocations(dir string) (*Revocations, error) {
	if dir != "" {
		fi, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("web_revoked_dir: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || !ok {
			return nil, fmt.Errorf("web_revoked_dir %s is not a directory", dir)
		}
		if int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
			return nil, fmt.Errorf("web_revoked_dir %s must belong to the manager's account and be writable by it alone (it is uid %d's, mode %04o)", dir, st.Uid, fi.Mode().Perm())
		}
	}
	return &Revocations{dir: dir, ids: map[string]time.Time{}}, nil
}

// validID reports whether id is one New draws (base64url), so that it can
// name a file.
func validID(id string) bool {
	return id != "" && len(id) <= 64 && strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == ""
}

func (rv *Revocations) file(id string) string { return filepath.Join(rv.dir, "revoked-"+id) }

// Revoke ends s now, on this replica and on those sharing the directory.
func (rv *Revocations) Revoke(s Session, now time.Time) error {
	if !validID(s.ID) {
		return fmt.Errorf("session id %q cannot be revoked", s.ID)
	}
	rv.mu.Lock()
	rv.ids[s.ID] = s.Expires
	prune := now.Sub(rv.pruned) > pruneEvery
	if prune {
		rv.pruned = now
		for id, exp := range rv.ids {
			if !now.Before(exp) {
				delete(rv.ids, id)
			}
		}
	}
	rv.mu.Unlock()
	if rv.dir == "" {
		return nil
	}
	if prune {
		rv.pruneDir(now)
	}
	p := rv.file(s.ID)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("record the sign-out: %w", err)
	}
	_, err = f.WriteString(strconv.FormatInt(s.Expires.Unix(), 10) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(p, s.Expires, s.Expires)
	}
	if err != nil {
		return fmt.Errorf("record the sign-out: %w", err)
	}
	return nil
}

// Revoked reports whether session id signed out (here or, through the
// shared directory, on another replica).
func (rv *Revocations) Revoked(id string, now time.Time) bool {
	rv.mu.Lock()
	exp, ok := rv.ids[id]
	rv.mu.Unlock()
	if ok {
		return now.Before(exp)
	}
	if rv.dir == "" || !validID(id) {
		return false
	}
	fi, err := os.Lstat(rv.file(id))
	if err != nil || !now.Before(fi.ModTime()) {
		return false
	}
	rv.mu.Lock()
	rv.ids[id] = fi.ModTime()
	rv.mu.Unlock()
	return true
}

// pruneDir removes the revocations of sessions that have expired anyway.
func (rv *Revocations) pruneDir(now time.Time) {
	ents, err := os.ReadDir(rv.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "revoked-") {
			continue
		}
		if fi, err := e.Info(); err == nil && !now.Before(fi.ModTime()) {
			os.Remove(filepath.Join(rv.dir, e.Name()))
		}
	}
}
