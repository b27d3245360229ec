// Command baicommit freezes rootless Podman containers into docker-archive
// .tar.gz files through the node's baicommit agent. See package
// github.com/baicommit/baicommit/client/cli for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/baicommit/baicommit/client/cli"
)

func main() {
	// Ctrl-C or a job's SIGTERM stops the waiting, not the freeze; the CLI
	// then says how to follow it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
