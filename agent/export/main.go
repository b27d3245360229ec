package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"go.podman.io/storage/pkg/unshare"
)

// Command is the hidden sub-command of baicommit-agent that runs a helper.
const Command = "__export-helper"

// Main is the entry point of a helper process started as
// `baicommit-agent __export-helper OP`: it reads a Spec from standard
// input, runs it and reports Events on standard output. It returns the
// process exit code.
func Main(op string) int {
	emit := Encoder(os.Stdout)
	if op == OpExport {
		// The agent normally starts the helper inside the owner's rootless
		// user namespace already, and then this returns at once. Started
		// as the plain user, it enters one (as `podman unshare` does): it
		// re-runs this binary inside it, forwarding stdio, which is why it
		// comes before the spec is read from standard input.
		unshare.MaybeReexecUsingUserNamespace(false)
	}
	var spec Spec
	if err := json.NewDecoder(io.LimitReader(os.Stdin, 1<<20)).Decode(&spec); err != nil {
		emit(Event{Event: EventError, Message: fmt.Sprintf("read helper spec: %v", err)})
		return 2
	}
	if spec.Op != op {
		emit(Event{Event: EventError, Message: fmt.Sprintf("helper started for %q but asked for %q", op, spec.Op)})
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := Run(ctx, spec, emit); err != nil {
		emit(Event{Event: EventError, Message: err.Error(), NoSpace: NoSpace(err), Denied: errors.Is(err, fs.ErrPermission)})
		return 1
	}
	return 0
}
