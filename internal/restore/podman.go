package restore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.podman.io/image/v5/docker/reference"

	"github.com/baicommit/baicommit/internal/registry"
)

// PodmanCLI drives the user's own podman command.
type PodmanCLI struct {
	// Path is the podman binary; empty means "podman" from PATH.
	Path string
	// Stderr receives podman's own messages (progress of a pull).
	Stderr io.Writer
}

func (c PodmanCLI) command(ctx context.Context, args ...string) (*exec.Cmd, error) {
	bin := c.Path
	if bin == "" {
		p, err := exec.LookPath("podman")
		if err != nil {
			return nil, errors.New("podman is not installed or not on your PATH: restore loads the image into your own Podman, so run it on a node that has Podman")
		}
		bin = p
	}
	return exec.CommandContext(ctx, bin, args...), nil
}

// run runs podman, returning its stdout; its stderr goes into the error.
func (c PodmanCLI) run(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd, err := c.command(ctx, args...)
	if err != nil {
		return "", err
	}
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	if c.Stderr != nil && args[0] == "pull" {
		cmd.Stderr = io.MultiWriter(&errb, c.Stderr)
	}
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("podman %s: %w: %s", args[0], err, strings.TrimSpace(lastLines(errb.String(), 5)))
	}
	return out.String() + errb.String(), nil
}

// Load runs `podman load` with the stream on its standard input.
func (c PodmanCLI) Load(ctx context.Context, r io.Reader) ([]string, error) {
	out, err := c.run(ctx, r, "load")
	if err != nil {
		return nil, err
	}
	return parseLoaded(out), nil
}

// parseLoaded finds the names in "Loaded image: X" or "Loaded image(s):
// X,Y" lines.
func parseLoaded(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Loaded image")
		if !ok {
			continue
		}
		_, list, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		for _, n := range strings.Split(list, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	return names
}

// Tag runs `podman tag`.
func (c PodmanCLI) Tag(ctx context.Context, image, name string) error {
	_, err := c.run(ctx, nil, "tag", image, name)
	return err
}

// ImageID runs `podman image inspect` for the id of the image name names.
func (c PodmanCLI) ImageID(ctx context.Context, name string) (string, error) {
	if _, err := c.run(ctx, nil, "image", "exists", name); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 {
			return "", nil // no such image
		}
		return "", err
	}
	out, err := c.run(ctx, nil, "image", "inspect", "--format", "{{.Id}}", name)
	if err != nil {
		return "", err
	}
	// The output may carry Podman's warnings too: the id is the line of
	// 64 hex digits.
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); len(line) == 64 && strings.Trim(line, "0123456789abcdef") == "" {
			return line, nil
		}
	}
	return "", fmt.Errorf("podman image inspect %s printed no image id: %s", name, strings.TrimSpace(lastLines(out, 3)))
}

// Remove runs `podman rmi`.
func (c PodmanCLI) Remove(ctx context.Context, image string) error {
	_, err := c.run(ctx, nil, "rmi", image)
	return err
}

// Pull runs `podman pull`. Credentials never go on podman's command line
// (other users can read it): they go into a private temporary auth file.
func (c PodmanCLI) Pull(ctx context.Context, ref string, opts PullOptions) error {
	args := []string{"pull"}
	if opts.Insecure {
		args = append(args, "--tls-verify=false")
	}
	authFile := opts.AuthFile
	if opts.Creds != "" {
		f, cleanup, err := tempAuthFile(ref, opts.Creds)
		if err != nil {
			return err
		}
		defer cleanup()
		authFile = f
	}
	if authFile != "" {
		args = append(args, "--authfile", authFile)
	}
	_, err := c.run(ctx, nil, append(args, ref)...)
	return err
}

// tempAuthFile writes creds for ref's registry to an auth file only the
// user can read, and returns a function that removes it.
func tempAuthFile(ref, creds string) (string, func(), error) {
	named, err := registry.ParseRef(ref)
	if err != nil {
		return "", nil, err
	}
	auth, err := registry.ParseCreds(creds)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "baicommit-auth-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	host := reference.Domain(named)
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{
		host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(auth.Username + ":" + auth.Password))},
	}})
	path := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		cleanup()
		return "", nil, err
	}
	return path, cleanup, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
