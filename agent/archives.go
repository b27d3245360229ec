package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/httperr"
	"github.com/baicommit/baicommit/policy"
)

// Bounds of one archive listing. The list helper runs as the user, who
// could tamper with it, so the agent takes only this much of what it
// reports; the answer also stays well below what the manager reads of an
// agent's answer (8 MiB).
const (
	maxListed       = 5000
	maxListBytes    = 4 << 20
	maxListWarnings = 100
	maxWarningLen   = 1 << 10
	// listTimeout bounds a listing on a shared filesystem that hangs.
	listTimeout = time.Minute
)

// Archives lists c's archives, newest first: the sidecars below c's save
// directory, read by a helper running as c (the agent itself never reads
// a user's files). savePath is the site's save path template the manager
// passes on; empty means the agent's own save_path. A save directory that
// does not exist yet is an empty list. The images of c's layer store
// (storePath is the site's template the manager passes, as savePath) are
// listed with them.
func (a *Agent) Archives(ctx context.Context, c Caller, savePath, storePath string) (*api.ArchiveList, error) {
	dir, root, err := a.archiveDir(c, savePath)
	if err != nil {
		return nil, err
	}
	u := c.User
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	// stop ends the helper early once the list is full.
	helperCtx, stop := context.WithCancel(ctx)
	defer stop()

	out := &api.ArchiveList{Dir: dir, Archives: []api.ArchiveEntry{}}
	size, full, done := 0, false, false
	spec := messages.Spec{Op: messages.OpList, Root: root, Dir: dir, Limit: maxListed}
	storeDir := ""
	if place, err := a.placement(c, savePath); err == nil {
		if sd, sr, err := a.storeFor(c, place, u, storePath); err == nil {
			storeDir = sd
			spec.LayerStore = &messages.LayerStore{Root: sr, Dir: sd}
		}
	}
	err = a.helpers.Run(helperCtx, u, spec, func(ev messages.Event) {
		switch {
		case full:
		case ev.Event == messages.EventDone:
			done = true
		case ev.Event == messages.EventWarning:
			if len(out.Warnings) < maxListWarnings {
				out.Warnings = append(out.Warnings, clip(ev.Message, maxWarningLen))
			}
		case ev.Event == messages.EventArchive && ev.Archive != nil:
			e := ev.Archive
			// What the helper claims is checked, not believed.
			inSave := below(e.Path, dir) && below(e.SidecarFile, dir)
			inStore := storeDir != "" && below(e.Path, storeDir) && below(e.SidecarFile, storeDir)
			if e.UID != u.UID || !(inSave || inStore) {
				return
			}
			b, _ := json.Marshal(e)
			if len(out.Archives) >= maxListed || size+len(b) > maxListBytes {
				full = true
				out.Warnings = append(out.Warnings, fmt.Sprintf("the list stops after %d archives: it would be too long", len(out.Archives)))
				stop()
				return
			}
			size += len(b)
			out.Archives = append(out.Archives, *e)
		}
	})
	switch {
	case full && ctx.Err() == nil:
		// The helper was stopped on purpose; what it reported stands.
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, &Error{Kind: httperr.Timeout, Err: ctx.Err(),
			Msg: fmt.Sprintf("listing the archives in %s on node %s took longer than %s", dir, a.cfg.NodeName, listTimeout)}
	case err != nil:
		var he *helperError
		if errors.As(err, &he) && he.denied {
			return nil, &Error{Kind: KindForbidden, Err: err, Msg: fmt.Sprintf("%s cannot read the save directory %s: %v", u.Name, dir, err)}
		}
		return nil, fmt.Errorf("list the archives of %s in %s: %w", u.Name, dir, err)
	case !done:
		return nil, fmt.Errorf("list the archives of %s in %s: the helper ended without finishing the list", u.Name, dir)
	}
	return out, nil
}

// archiveDir is the directory c's archives are listed from, and the save
// root it lies below: the part of the save path that depends only on the
// user (as the version route reports it), checked as a freeze's
// destination is. The save path template is placement's: the manager's
// (or root's) when given, else the agent's own.
func (a *Agent) archiveDir(c Caller, savePath string) (dir, root string, err error) {
	switch {
	case c.User == nil:
		return "", "", userErr(KindForbidden, "uid %d has no account on node %s, so it has no archives here", c.UID, a.cfg.NodeName)
	case c.UID == 0:
		return "", "", userErr(KindInvalid, "root has no archives of its own: list a user's archives as that user")
	}
	place, err := a.placement(c, savePath)
	if err != nil {
		return "", "", err
	}
	userDir := place.UserDir(c.User.Name, strconv.Itoa(c.UID))
	if userDir == "" {
		return "", "", userErr(KindInvalid, "the user name %q cannot be used in a save path", c.User.Name)
	}
	// A template without placeholders expands to itself: Destination
	// checks it exactly as it checks where a freeze writes.
	fixed := policy.Policy{SavePath: userDir, SaveRoots: place.SaveRoots}
	dir, root, err = fixed.Destination(policy.Vars{})
	if err != nil {
		return "", "", &Error{Kind: KindInvalid, Err: err, Msg: "cannot list archives: " + err.Error()}
	}
	return dir, root, nil
}

// below reports whether the clean absolute path p lies below dir.
func below(p, dir string) bool {
	if p == "" || filepath.Clean(p) != p {
		return false
	}
	return dir == "/" || strings.HasPrefix(p, dir+"/")
}

// clip cuts s to at most n bytes.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

func (a *Agent) handleArchives(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	list, err := a.Archives(r.Context(), caller(r), q.Get(api.QuerySavePath), q.Get(api.QueryStorePath))
	if err != nil {
		a.log.Info("archive list refused", "caller", caller(r).UID, "status", Status(err), "err", err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}
