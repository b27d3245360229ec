package cli

import (
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/internal/restore"
)

func (e *env) restoreCommand() *ucli.Command {
	flags := append(registryFlags(),
		&ucli.StringFlag{Name: "name", Aliases: []string{"n"}, Usage: "also name the restored image `NAME:TAG`"},
		&ucli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		storeFlag(),
	)
	return &ucli.Command{
		Name:      "restore",
		Usage:     "load a frozen image into your Podman, to start a new session from it",
		ArgsUsage: "ARCHIVE|STORE-IMAGE|REF",
		Description: "ARCHIVE (a .tar.gz baicommit wrote, and a file of yours) is checked against\n" +
			"the sha256 in its sidecar first, and refused if it changed since the freeze;\n" +
			"then it is loaded into your own rootless Podman under the name its sidecar\n" +
			"recorded, unless that name already belongs to another of your images (only\n" +
			"--name moves a name). STORE-IMAGE (a layer store image's path, or its name\n" +
			"in your store) is pulled from its layout, every blob checked against its\n" +
			"digest. REF (REGISTRY/NAME[:TAG]) is pulled.\n" +
			"Then start a new session: podman run -it IMAGE",
		Flags:        flags,
		OnUsageError: onUsageError,
		Action:       e.restore,
	}
}

func (e *env) restore(c *ucli.Context) error {
	arg, err := oneArg(c, "ARCHIVE or REF")
	if err != nil {
		return err
	}
	p := restore.PodmanCLI{Stderr: e.stderr}
	if c.Bool("json") {
		p.Stderr = nil
	}
	var res *restore.Result
	if path, ok := storeImagePath(c, arg); ok {
		res, err = restore.StoreImage(c.Context, p, path, c.String("name"))
	} else if restore.IsArchive(arg) {
		if !c.Bool("json") {
			fmt.Fprintf(e.stderr, "Checking %s against its sidecar...\n", arg)
		}
		res, err = restore.Archive(c.Context, p, arg, c.String("name"))
	} else {
		req, perr := pushRequest(c, arg)
		if perr != nil {
			return perr
		}
		res, err = restore.Ref(c.Context, p, arg, c.String("name"), restore.PullOptions{
			Creds: req.Creds, AuthFile: req.AuthFile, Insecure: req.TLSVerify != nil && !*req.TLSVerify,
		})
	}
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(e.stdout, res)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(e.stderr, "baicommit: warning: %s\n", w)
	}
	if res.SHA256 != "" {
		fmt.Fprintf(e.stdout, "Verified %s (sha256 %s)\n", res.Source, res.SHA256)
	}
	fmt.Fprintf(e.stdout, "Restored %s into your Podman\n", res.Image)
	for _, w := range res.Warnings {
		fmt.Fprintf(e.stderr, "baicommit: warning: %s\n", w)
	}
	fmt.Fprintf(e.stdout, "Start a new session from it:\n  podman run -it %s\n", res.Image)
	return nil
}
