// Package archives finds and checks frozen images on the shared
// filesystem through their .json sidecars: which archives a user has,
// whether an archive is still the one that was frozen (its sha256), and
// where it was pushed. It runs as the user whose archives they are (the
// CLI, or the agent's helper), never as root.
package archives

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/baicommit/baicommit/api"
)

// Suffix is the file name ending of archives (api.ArchiveSuffix).
const Suffix = api.ArchiveSuffix

// maxSidecar bounds how much of a .json file is read as a sidecar.
const maxSidecar = 1 << 20

// SidecarPath is where the sidecar of the archive at path is.
func SidecarPath(path string) string {
	return api.SidecarName(path)
}

// ReadSidecar reads and checks the sidecar at path (a regular file, not
// a symbolic link).
func ReadSidecar(path string) (*api.Sidecar, error) {
	sc, _, err := readOwnedSidecar(path)
	return sc, err
}

func decodeSidecar(r io.Reader, path string) (*api.Sidecar, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSidecar+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxSidecar {
		return nil, fmt.Errorf("%s is not a baicommit sidecar: larger than %d bytes", path, maxSidecar)
	}
	var sc api.Sidecar
	if err := json.Unmarshal(b, &sc); err != nil {
		return nil, fmt.Errorf("%s is not a baicommit sidecar: %w", path, err)
	}
	if err := check(&sc); err != nil {
		return nil, fmt.Errorf("%s is not a baicommit sidecar: %w", path, err)
	}
	return &sc, nil
}

// check makes sure a sidecar names an archive beside it and a digest.
func check(sc *api.Sidecar) error {
	switch {
	case sc.Archive == "" || strings.ContainsRune(sc.Archive, '/') || sc.Archive == "." || sc.Archive == "..":
		return fmt.Errorf("bad archive name %q", sc.Archive)
	case len(sc.SHA256) != sha256.Size*2:
		return fmt.Errorf("bad sha256 %q", sc.SHA256)
	}
	if _, err := hex.DecodeString(sc.SHA256); err != nil {
		return fmt.Errorf("bad sha256 %q", sc.SHA256)
	}
	return nil
}

// ErrMismatch marks an archive whose bytes are not those that were frozen.
var ErrMismatch = errors.New("archive does not match its sidecar")

// MismatchError says how an archive differs from its sidecar.
type MismatchError struct {
	Path       string
	Want, Got  string
	Size, Need int64
}

func (e *MismatchError) Error() string {
	if e.Size != e.Need {
		return fmt.Sprintf("%s is %d bytes but its sidecar says %d: the file was changed or truncated after the freeze; refusing to use it", e.Path, e.Size, e.Need)
	}
	return fmt.Sprintf("%s has sha256 %s but its sidecar says %s: the file was changed after the freeze; refusing to use it", e.Path, e.Got, e.Want)
}

func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// Verify reads f from the start to the end and checks its size and sha256
// against sc, in one streaming pass (no copy). It leaves f positioned at
// the start again, so that the verified file can be used as it is.
func Verify(ctx context.Context, f *os.File, sc *api.Sidecar) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h := NewHasher(f)
	if _, err := io.Copy(io.Discard, ctxReader{ctx, h}); err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return h.Check(f.Name(), sc)
}

// Hasher hashes and counts the bytes read through it, so that a stream
// that is being used (loaded, pushed) can be checked against its sidecar
// when it ends, without reading the file twice.
type Hasher struct {
	r io.Reader
	h hash.Hash
	n int64
}

// NewHasher returns a Hasher reading from r.
func NewHasher(r io.Reader) *Hasher { return &Hasher{r: r, h: sha256.New()} }

func (h *Hasher) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// Check compares what was read with the sidecar's size and sha256; path
// names the file in the error.
func (h *Hasher) Check(path string, sc *api.Sidecar) error {
	got := hex.EncodeToString(h.h.Sum(nil))
	if sc.Size > 0 && h.n != sc.Size {
		return &MismatchError{Path: path, Want: sc.SHA256, Got: got, Size: h.n, Need: sc.Size}
	}
	if !strings.EqualFold(got, sc.SHA256) {
		return &MismatchError{Path: path, Want: sc.SHA256, Got: got, Size: h.n, Need: h.n}
	}
	return nil
}

// ctxReader stops a long read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Open opens the archive at path for reading (not following a symbolic
// link at its last component) together with its sidecar, and takes its
// shared lock (Share) until the file is closed. A missing sidecar is an
// error: without it nothing can be verified. Both files must
// belong to the caller (root may open anyone's): a file says whatever its
// writer wanted, so an archive and sidecar another user put in a directory
// the caller can see are never taken for the caller's own.
func Open(path string) (*os.File, *api.Sidecar, error) {
	scPath := SidecarPath(path)
	sc, scUID, err := readOwnedSidecar(scPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%s has no sidecar %s, so it cannot be verified: only archives baicommit wrote can be used", path, scPath)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := mine(scPath, scUID); err != nil {
		return nil, nil, err
	}
	if sc.Archive != filepath.Base(path) {
		return nil, nil, fmt.Errorf("the sidecar %s describes %s, not %s", scPath, sc.Archive, filepath.Base(path))
	}
	f, fi, err := openRegular(path)
	if err != nil {
		return nil, nil, err
	}
	if err := mine(path, fileUID(fi)); err != nil {
		f.Close()
		return nil, nil, err
	}
	// Held while the archive is read: no prune or rm takes it meanwhile.
	Share(f)
	return f, sc, nil
}

// mine checks that a file of the caller's archive belongs to the caller.
func mine(path string, uid int) error {
	if me := os.Geteuid(); me != 0 && uid != me {
		return fmt.Errorf("%s belongs to uid %d, not to you: only your own archives are used (anyone can write a file that claims to be yours); if you trust it, copy it and its .json sidecar into a directory of yours", path, uid)
	}
	return nil
}
