package runas

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/baicommit/baicommit/internal/identity"
)

// Cgroups places processes the agent starts for a user where the user's
// own processes belong, so that the limits and accounting of the user (or
// of their jobs) apply to them, and a Slurm job's end or a user's logout
// that ends the user's cgroup ends them too. Without it they would run in
// the agent's own cgroup, outside every limit of the user's.
type Cgroups struct {
	// Templates are cgroup paths relative to each hierarchy's root, with
	// {uid} and {user}; the first that exists in some hierarchy is used,
	// in every hierarchy where it exists.
	Templates []string
	// Root is where the hierarchies are mounted (default /sys/fs/cgroup,
	// every cgroup and cgroup2 mount below it).
	Root string
}

// Place moves process pid into u's cgroups and returns the cgroup
// directories it now runs in (none: no template exists for u, and the
// process stays where it is). The process should not have started
// anything yet: children it made before are not moved.
func (c Cgroups) Place(pid int, u *identity.User) ([]string, error) {
	mounts, err := c.hierarchies()
	if err != nil {
		return nil, err
	}
	for _, tmpl := range c.Templates {
		rel := strings.NewReplacer("{uid}", strconv.Itoa(u.UID), "{user}", u.Name).Replace(tmpl)
		if filepath.IsAbs(rel) || filepath.Clean(rel) != rel || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("user cgroup %q is not a clean relative path", rel)
		}
		var placed []string
		var errs []error
		for _, m := range mounts {
			dir := filepath.Join(m, rel)
			if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
				continue
			}
			got, err := enter(dir, pid)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			placed = append(placed, got)
		}
		if len(placed) > 0 || len(errs) > 0 {
			return placed, errors.Join(errs...)
		}
	}
	return nil, nil
}

// leafName is the cgroup made below a cgroup v2 directory that may not
// hold processes itself (it has controllers enabled for its children).
const leafName = "baicommit"

// enter writes pid into dir's cgroup.procs, or, where cgroup v2's rule
// that only leaves hold processes refuses that, into a leaf of ours
// below it.
func enter(dir string, pid int) (string, error) {
	err := writeProcs(dir, pid)
	if errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EOPNOTSUPP) {
		leaf := filepath.Join(dir, leafName)
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("cgroup %s: %w", leaf, err)
		}
		dir, err = leaf, writeProcs(leaf, pid)
	}
	if err != nil {
		return "", fmt.Errorf("move process %d into cgroup %s: %w", pid, dir, err)
	}
	return dir, nil
}

func writeProcs(dir string, pid int) error {
	f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(pid) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// hierarchies are the mount points of the cgroup hierarchies below Root:
// each cgroup v1 controller's and the v2 tree.
func (c Cgroups) hierarchies() ([]string, error) {
	root := c.Root
	if root == "" {
		root = "/sys/fs/cgroup"
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		if fs := fields[sep+1]; fs != "cgroup" && fs != "cgroup2" {
			continue
		}
		mp := fields[4]
		if mp == root || strings.HasPrefix(mp, root+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}
