package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/baicommit/baicommit/internal/units"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archives"
	"github.com/baicommit/baicommit/internal/registry"
)

// EnvCreds names the environment variable --creds may come from, so that
// a password need not be on the command line (which other users can read).
const EnvCreds = "BAICOMMIT_CREDS"

// registryFlags are the flags of every command that talks to a registry.
func registryFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "creds", Usage: "registry credentials `USER:PASSWORD` (default: your auth files, as after `podman login`)", EnvVars: []string{EnvCreds}},
		&ucli.StringFlag{Name: "authfile", Usage: "use the auth file `PATH` instead of the default ones"},
		&ucli.BoolFlag{Name: "tls-verify", Value: true, Usage: "require HTTPS and verify certificates (--tls-verify=false for a plain-HTTP registry)"},
	}
}

// pushRequest reads the registry flags for a push to ref.
func pushRequest(c *ucli.Context, ref string) (*api.PushRequest, error) {
	p := &api.PushRequest{Ref: ref, Creds: c.String("creds")}
	if f := c.String("authfile"); f != "" {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, err
		}
		p.AuthFile = abs
	}
	if c.IsSet("tls-verify") {
		v := c.Bool("tls-verify")
		p.TLSVerify = &v
	}
	return p, nil
}

// commitPush reads commit's --push and registry flags.
func commitPush(c *ucli.Context) (*api.PushRequest, error) {
	ref := c.String("push")
	if ref == "" {
		// --creds may come from the environment, set for other commands.
		for _, f := range []string{"authfile", "tls-verify"} {
			if c.IsSet(f) {
				return nil, usageErrorf("commit", "--%s only applies with --push REF", f)
			}
		}
		return nil, nil
	}
	if _, err := registry.ParseRef(ref); err != nil {
		return nil, usageErrorf("commit", "--push: %v", err)
	}
	return pushRequest(c, ref)
}

// pushOutput is what `push --json` prints.
type pushOutput struct {
	Archive string `json:"archive"`
	SHA256  string `json:"sha256"`
	Ref     string `json:"ref"`
	Digest  string `json:"digest"`
	// Sidecar is the sidecar that records the push, empty if it could
	// not be updated (see the warning).
	Sidecar string `json:"sidecar,omitempty"`
}

func (e *env) pushCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "push",
		Usage:     "push a frozen archive to an OCI registry (no Podman needed)",
		ArgsUsage: "ARCHIVE|STORE-IMAGE REF",
		Description: "Checks ARCHIVE (a .tar.gz baicommit wrote) against its sidecar's sha256, pushes\n" +
			"it to REF (REGISTRY/NAME[:TAG]) with your registry credentials, and records\n" +
			"the push and its manifest digest in the sidecar. Runs anywhere the archive\n" +
			"can be read, e.g. a login node: it needs neither Podman nor the agent.\n" +
			"A STORE-IMAGE (a layer store image's path, or its name in your store) is\n" +
			"pushed straight from the store's blobs, each checked as it is read; blobs\n" +
			"the registry has are skipped.",
		Flags:        append(registryFlags(), &ucli.BoolFlag{Name: "json", Usage: "print the result as JSON"}, storeFlag()),
		OnUsageError: onUsageError,
		Action:       e.push,
	}
}

func (e *env) push(c *ucli.Context) error {
	args := c.Args().Slice()
	if len(args) != 2 {
		return usageErrorf("push", "push needs ARCHIVE and REF, got %d arguments", len(args))
	}
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			return usageErrorf("push", "flags go before ARCHIVE and REF")
		}
	}
	path, ref := args[0], args[1]
	if _, err := registry.ParseRef(ref); err != nil {
		return usageErrorf("push", "%v", err)
	}
	req, err := pushRequest(c, ref)
	if err != nil {
		return err
	}
	ctx := c.Context
	opts := registry.Options{
		Ref:      ref,
		Creds:    req.Creds,
		AuthFile: req.AuthFile,
		Insecure: req.TLSVerify != nil && !*req.TLSVerify,
		Retries:  registry.DefaultRetries,
		// The archive is unpacked there while it is pushed: a job's
		// TMPDIR is usually the right scratch space.
		TempDir: os.Getenv("TMPDIR"),
	}
	if image, ok := storeImagePath(c, path); ok {
		return e.pushStoreImage(c, image, opts)
	}
	f, sc, err := archives.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := archives.Verify(ctx, f, sc); err != nil {
		return err
	}
	opts.Archive = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	defer e.pushProgress(c, path, &opts)()
	res, err := registry.Push(ctx, opts)
	if err != nil {
		return err
	}
	out := pushOutput{Archive: path, SHA256: sc.SHA256, Ref: res.Ref, Digest: res.Digest}
	scPath := archives.SidecarPath(path)
	if err := archives.RecordPush(scPath, api.PushRecord{Ref: res.Ref, Digest: res.Digest, Pushed: e.now().UTC()}); err != nil {
		fmt.Fprintf(e.stderr, "baicommit: warning: pushed, but the sidecar could not record it: %v\n", err)
	} else {
		out.Sidecar = scPath
	}
	return e.printPush(c, out)
}

// pushProgress shows a push's progress (a bar on a terminal) and returns
// what clears it.
func (e *env) pushProgress(c *ucli.Context, path string, opts *registry.Options) func() {
	if e.tty {
		b := &progressBar{w: e.stderr, width: e.width, now: e.now}
		start := e.now()
		opts.Progress = func(sent, total int64) {
			b.update(&api.Task{State: api.StateRunning, Phase: api.PhasePushing, Created: start,
				Push: &api.PushStatus{Ref: opts.Ref, Sent: sent, Total: total}})
		}
		return b.clear
	}
	if !c.Bool("json") {
		fmt.Fprintf(e.stderr, "Pushing %s to %s\n", path, opts.Ref)
	}
	return func() {}
}

// printPush reports a push.
func (e *env) printPush(c *ucli.Context, out pushOutput) error {
	path, res := out.Archive, out
	if c.Bool("json") {
		return writeJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Pushed %s to %s\n", path, res.Ref)
	tw := newTable(e.stdout)
	fmt.Fprintf(tw, "  digest:\t%s\n", res.Digest)
	if named, err := registry.ParseRef(res.Ref); err == nil {
		fmt.Fprintf(tw, "  pull:\tpodman pull %s@%s\n", named.Name(), res.Digest)
	}
	return tw.Flush()
}

// pushLine is the progress line of a push: bytes of layers read so far.
func pushLine(p *api.PushStatus, took time.Duration, width int) string {
	tail := "  " + clock(took)
	if p.Total <= 0 {
		return fit(fmt.Sprintf("pushing  %s sent%s", units.Human(p.Sent), tail), width)
	}
	pct := min(int(p.Sent*100/p.Total), 99)
	head := fmt.Sprintf("pushing  %s / %s %3d%% ", units.Human(p.Sent), units.Human(p.Total), pct)
	room := width - 1 - len(head) - len(tail) - 2
	if room < 10 {
		return fit(head+tail, width)
	}
	return fit(head+"["+bar(pct, min(room, 40))+"]"+tail, width)
}
