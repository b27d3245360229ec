package asowner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/baicommit/baicommit/agent/messages"

	"github.com/baicommit/baicommit/internal/archives"
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
