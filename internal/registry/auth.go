package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/types"
)

// defaultAuth finds the user's credentials for dest in the standard auth
// files when neither --creds nor --authfile was given and
// XDG_RUNTIME_DIR is unset (a batch job, the agent's helper, env -i).
//
// containers/image would then look first in /run/containers/UID/auth.json,
// and on a node where root has run Podman /run/containers is root's and
// unreadable: the permission error would fail the push even though the
// user's ~/.docker/config.json holds the credentials. So the files are
// read here, in containers/image's order, skipping those the user cannot
// reach; the first that has credentials for dest wins. Without any, the
// push is anonymous.
func defaultAuth(sys *types.SystemContext, dest reference.Named) error {
	if sys.DockerAuthConfig != nil || sys.AuthFilePath != "" || os.Getenv("XDG_RUNTIME_DIR") != "" {
		return nil
	}
	for _, path := range defaultAuthFiles() {
		if _, err := os.Stat(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				continue
			}
			return fmt.Errorf("auth file %s: %w", path, err)
		}
		creds, err := config.GetCredentialsForRef(&types.SystemContext{AuthFilePath: path}, dest)
		if err != nil {
			return fmt.Errorf("read credentials for %s from %s: %w", reference.Domain(dest), path, err)
		}
		if creds != (types.DockerAuthConfig{}) {
			sys.DockerAuthConfig = &creds
			return nil
		}
	}
	sys.DockerAuthConfig = &types.DockerAuthConfig{}
	return nil
}

// defaultAuthFiles are the auth files containers/image reads for a user
// without XDG_RUNTIME_DIR, in its order.
func defaultAuthFiles() []string {
	home, _ := os.UserHomeDir()
	cfgHome := os.Getenv("XDG_CONFIG_HOME")
	if cfgHome == "" {
		cfgHome = filepath.Join(home, ".config")
	}
	docker := filepath.Join(home, ".docker")
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		docker = d
	}
	return []string{
		fmt.Sprintf("/run/containers/%d/auth.json", os.Getuid()),
		filepath.Join(cfgHome, "containers", "auth.json"),
		filepath.Join(docker, "config.json"),
	}
}
