package asowner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/baicommit/baicommit/agent/messages"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archives"
	"github.com/baicommit/baicommit/internal/layerstore"
	"github.com/baicommit/baicommit/internal/safefile"
)

// runList reports the archives of the user the helper runs as that the
// sidecars below spec.Dir describe, one event each, newest first, then
// done. It reads as that user, so it sees exactly what they may read; a
// directory that does not exist yet (nothing frozen) is an empty list.
func list(ctx context.Context, spec messages.Spec, emit func(messages.Event)) error {
	entries, warnings, err := archives.List(ctx, spec.Dir, os.Geteuid())
	if errors.Is(err, fs.ErrNotExist) {
		entries, warnings, err = nil, nil, nil
	}
	if err != nil {
		return fmt.Errorf("list archives: %w", err)
	}
	if ls := spec.LayerStore; ls != nil {
		st, images, more, err := userStoreImages(ctx, ls)
		if errors.Is(err, safefile.ErrUntrusted) {
			// Their archives are still listed.
			more, err = []string{fmt.Sprintf("the layer store is not listed: %v", err)}, nil
		}
		if err != nil {
			return err
		}
		if st != nil {
			st.Close()
		}
		entries, warnings = mergeNewestFirst(entries, images), append(warnings, more...)
	}
	for _, w := range warnings {
		emit(messages.Event{Event: messages.EventWarning, Message: w})
	}
	for i := range entries {
		if spec.Limit > 0 && i == spec.Limit {
			emit(messages.Event{Event: messages.EventWarning, Message: fmt.Sprintf("only the newest %d of %d archives are listed", spec.Limit, len(entries))})
			break
		}
		emit(messages.Event{Event: messages.EventArchive, Archive: &entries[i]})
	}
	emit(messages.Event{Event: messages.EventDone, Size: int64(len(entries))})
	return nil
}

// userStoreImages opens the caller's layer store ls and lists their
// images in it, newest first. A store that does not exist yet holds
// nothing (st is nil); one not trusted to be theirs is an error
// satisfying errors.Is(err, safefile.ErrUntrusted), which callers leave
// alone: a freeze there is refused, saying so. The caller closes st.
func userStoreImages(ctx context.Context, ls *messages.LayerStore) (*layerstore.Store, []archives.Entry, []string, error) {
	st, err := layerstore.Open(ls.Root, ls.Dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the layer store %s: %w", ls.Dir, err)
	}
	uid := os.Getuid()
	images, warnings, err := st.List(ctx, func(e *api.ArchiveEntry) bool { return e.UID == uid })
	if err != nil {
		st.Close()
		return nil, nil, nil, fmt.Errorf("the images of the layer store %s: %w", st.Path(), err)
	}
	return st, images, warnings, nil
}

// mergeNewestFirst merges two lists sorted newest first.
func mergeNewestFirst(a, b []archives.Entry) []archives.Entry {
	out := append(slices.Clone(a), b...)
	slices.SortStableFunc(out, func(x, y archives.Entry) int { return y.Created.Compare(x.Created) })
	return out
}
