package asowner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/baicommit/baicommit/agent/messages"
	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archives"
	"github.com/baicommit/baicommit/internal/config"
	"github.com/baicommit/baicommit/internal/safefile"
	"github.com/baicommit/baicommit/policy"
)

// UserRetentionFile is where a user keeps retention rules of their own,
// below their home: the same keys as [retention] in agent.toml. They add
// to the site's: an archive goes when either does not keep it.
const UserRetentionFile = ".config/baicommit/retention.toml"

// userRetention reads the caller's own retention rules (none: off).
func userRetention() (policy.Retention, error) {
	var r policy.Retention
	home, err := os.UserHomeDir()
	if err != nil {
		return r, nil
	}
	path := filepath.Join(home, UserRetentionFile)
	if err := config.Load(path, &r); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return r, nil
		}
		return r, err
	}
	return r, r.Validate(path)
}

// prune applies the site's retention rules and the user's to the user's
// archives below spec.Dir; each removal is reported as it happens.
func prune(ctx context.Context, spec messages.Spec, emit func(messages.Event)) error {
	mine, err := userRetention()
	if err != nil {
		return err
	}
	var site policy.Retention
	if spec.Retention != nil {
		site = *spec.Retention
	}
	uid := os.Getuid()
	out := &api.PruneResult{Dir: spec.Dir, DryRun: spec.DryRun, Removed: []api.ArchiveEntry{}}
	entries, warnings, err := archives.List(ctx, spec.Dir, uid)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list archives: %w", err)
	}
	out.Warnings = warnings
	for _, e := range policy.Drop(entries, time.Now(), site, mine) {
		n := archives.Sizes(&e)
		if !spec.DryRun {
			if err := archives.Remove(&e, uid); err != nil {
				out.Warnings = append(out.Warnings, "kept "+e.Path+": "+err.Error())
				continue
			}
		}
		out.Removed = append(out.Removed, e)
		out.Freed += n
		emit(messages.Event{Event: messages.EventArchive, Archive: &e, Size: n})
	}
	out.Kept = len(entries) - len(out.Removed)
	if ls := spec.LayerStore; ls != nil {
		if err := pruneStore(ctx, ls, site, mine, spec.DryRun, out, emit); err != nil {
			return err
		}
	}
	emit(messages.Event{Event: messages.EventDone, Prune: out})
	return nil
}

// pruneStore applies the same rules to the user's images in the layer
// store ls, apart from their archives: the archive and the image of one
// freeze (format "both") are each the newest of their kind. An image's
// layout goes at once and frees nothing yet: its blobs stay until
// `prune --store` finds that no image uses them, so a restore or a push
// that has read the layout goes on.
func pruneStore(ctx context.Context, ls *messages.LayerStore, site, mine policy.Retention, dryRun bool, out *api.PruneResult, emit func(messages.Event)) error {
	st, images, warnings, err := userStoreImages(ctx, ls)
	if errors.Is(err, safefile.ErrUntrusted) {
		out.Warnings = append(out.Warnings, "the layer store is left alone: "+err.Error())
		return nil
	}
	if err != nil || st == nil {
		return err
	}
	defer st.Close()
	out.Warnings = append(out.Warnings, warnings...)
	out.Kept += len(images)
	for _, e := range policy.Drop(images, time.Now(), site, mine) {
		if !dryRun {
			if err := st.Remove(filepath.Base(e.Path)); err != nil {
				out.Warnings = append(out.Warnings, "kept "+e.Path+": "+err.Error())
				continue
			}
		}
		out.Removed = append(out.Removed, e)
		out.Kept--
		emit(messages.Event{Event: messages.EventArchive, Archive: &e})
	}
	return nil
}

// usage sums the user's archives below spec.Dir and, for each group quota
// the spec names, the project directory of that group on the way to
// spec.Dest (the freeze's destination).
func usage(ctx context.Context, spec messages.Spec, emit func(messages.Event)) error {
	u, err := archives.Usage(ctx, spec.Dir, os.Getuid())
	if err != nil {
		return err
	}
	if err := storeUsage(ctx, spec.LayerStore, u); err != nil {
		return err
	}
	for _, g := range spec.Groups {
		dest := spec.Dest
		if dest == "" {
			dest = spec.Dir
		}
		scope := archives.GroupScope(spec.Root, dest, g.GID)
		if scope == "" {
			continue
		}
		n, b, err := archives.GroupUsage(ctx, scope, g.GID)
		if err != nil {
			return fmt.Errorf("the usage of group %s below %s: %w", g.Name, scope, err)
		}
		u.Groups = append(u.Groups, api.GroupUsage{Group: g.Name, Dir: scope, Archives: n, Bytes: b, Quota: g.Quota})
	}
	emit(messages.Event{Event: messages.EventDone, Usage: u})
	return nil
}

// storeUsage adds what the caller keeps in the layer store ls to u: the
// blobs their files hold (each once) and their images.
func storeUsage(ctx context.Context, ls *messages.LayerStore, u *api.Usage) error {
	if ls == nil {
		return nil
	}
	// No store yet, or none trusted to be the user's (a freeze there is
	// refused, saying why): nothing of theirs to count.
	st, imgs, _, err := userStoreImages(ctx, ls)
	if errors.Is(err, safefile.ErrUntrusted) {
		return nil
	}
	if err != nil || st == nil {
		return err
	}
	defer st.Close()
	n, err := st.OwnedBytes(ctx, os.Getuid())
	if err != nil {
		return fmt.Errorf("the usage of the layer store %s: %w", st.Path(), err)
	}
	u.Store, u.StoreBytes, u.StoreImages = st.Path(), n, len(imgs)
	u.Bytes += u.StoreBytes
	u.Archives += u.StoreImages
	return nil
}

// removeArchives removes the archives spec.Paths names, with their
// sidecars: only the user's own, found through their sidecars below
// spec.Dir.
func removeArchives(ctx context.Context, spec messages.Spec, emit func(messages.Event)) error {
	uid := os.Getuid()
	entries, _, err := archives.List(ctx, spec.Dir, uid)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list archives: %w", err)
	}
	out := &api.RemoveResult{Removed: []string{}}
	for _, p := range spec.Paths {
		i := slicesIndex(entries, p)
		if i < 0 {
			return fmt.Errorf("%s is not one of your archives below %s (see baicommit list)", p, spec.Dir)
		}
		n := archives.Sizes(&entries[i])
		if err := archives.Remove(&entries[i], uid); err != nil {
			return err
		}
		out.Removed = append(out.Removed, p)
		out.Freed += n
	}
	emit(messages.Event{Event: messages.EventDone, Remove: out})
	return nil
}

func slicesIndex(entries []archives.Entry, path string) int {
	for i := range entries {
		if entries[i].Path == filepath.Clean(path) {
			return i
		}
	}
	return -1
}
