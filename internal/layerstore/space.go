package layerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/baicommit/baicommit/internal/safefile"
)

// Usage is what a store takes. Quotas and `baicommit usage` count Bytes
// (every blob once), not the sum of the images' sizes.
type Usage struct {
	Images int `json:"images"`
	Blobs  int `json:"blobs"`
	// Bytes is the size of every blob once: the store's unique bytes.
	// Allocated is what they take on disk.
	Bytes     int64 `json:"bytes"`
	Allocated int64 `json:"allocated"`
	// Referenced is what the blobs some image uses take, Unreferenced
	// what the others take (what a garbage collection frees, but for
	// blobs still in their grace period or held by a freeze).
	Referenced   int64 `json:"referenced"`
	Unreferenced int64 `json:"unreferenced"`
	// ByUID is the unique bytes by the user owning each blob file (the
	// first to write it): in a project's store, what each member's
	// freezes added, as a filesystem quota charges it.
	ByUID map[int]int64 `json:"by_uid"`
	// PerImage is, for each image, its size (all its blobs) and what
	// only it uses (what removing it would free).
	PerImage map[string]ImageUsage `json:"per_image"`
}

// ImageUsage is one image's part of a store.
type ImageUsage struct {
	Size      int64 `json:"size"`
	Exclusive int64 `json:"exclusive"`
}

// blobInfo is what a collection or a usage knows of one blob.
type blobInfo struct {
	size, blocks int64
	uid          int
	mtime        time.Time
}

// scanBlobs lists the store's blobs by digest (temporary and unknown
// names aside).
func (s *Store) scanBlobs(ctx context.Context) (map[digest.Digest]blobInfo, error) {
	ns, err := names(s.blobs)
	if err != nil {
		return nil, fmt.Errorf("list the blobs of %s: %w", s.path, err)
	}
	out := make(map[digest.Digest]blobInfo, len(ns))
	for _, n := range ns {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, n)
		if isTemp(n) || d.Validate() != nil {
			continue
		}
		st, err := statAt(s.blobs, n)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		out[d] = blobInfo{size: st.Size, blocks: st.Blocks * 512, uid: int(st.Uid), mtime: time.Unix(st.Mtim.Unix())}
	}
	return out, nil
}

// references maps each published image (and each layout being
// published, under its temporary name) to the blobs it uses. An image
// whose documents cannot be read makes it fail: what it uses is not
// known, so nothing may be collected.
func (s *Store) references(ctx context.Context, withTemp bool) (map[string][]digest.Digest, error) {
	ns, err := names(s.images)
	if err != nil {
		return nil, fmt.Errorf("list the images of %s: %w", s.path, err)
	}
	out := map[string][]digest.Digest{}
	for _, n := range ns {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		removing := strings.HasSuffix(n, removingSuffix)
		if isTemp(n) && (!withTemp || removing) {
			continue
		}
		ds, err := s.uses(n)
		if err != nil {
			if isTemp(n) {
				// Half assembled or half removed: a freeze holds what
				// the first uses.
				continue
			}
			if _, serr := statAt(s.images, n); errors.Is(serr, unix.ENOENT) {
				// Removed meanwhile.
				continue
			}
			return nil, fmt.Errorf("image %s: %w (remove it with `baicommit rm`, or restore the missing blob, before a garbage collection can run)", s.ImagePath(n), err)
		}
		out[n] = ds
	}
	return out, nil
}

// uses is what the layout name uses: its manifest, config and layers.
func (s *Store) uses(name string) ([]digest.Digest, error) {
	dir, err := openDirAt(s.images, name)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	md, _, err := readIndex(dir)
	if err != nil {
		return nil, err
	}
	b, err := readFileAt(s.blobs, md.Digest.Encoded(), maxSmall)
	if err != nil {
		return nil, fmt.Errorf("its manifest %s: %w", md.Digest, err)
	}
	var m imgspecv1.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("its manifest %s: %w", md.Digest, err)
	}
	ds := []digest.Digest{md.Digest, m.Config.Digest}
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	return ds, nil
}

// OwnedBytes is what the blobs whose files uid owns take (each once): what
// a quota charges uid for. Unlike Usage it reads no image's documents.
func (s *Store) OwnedBytes(ctx context.Context, uid int) (int64, error) {
	blobs, err := s.scanBlobs(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, b := range blobs {
		if b.uid == uid {
			n += b.size
		}
	}
	return n, nil
}

// Usage says what the store takes.
func (s *Store) Usage(ctx context.Context) (*Usage, error) {
	blobs, err := s.scanBlobs(ctx)
	if err != nil {
		return nil, err
	}
	refs, err := s.references(ctx, false)
	if err != nil {
		return nil, err
	}
	users := map[digest.Digest]int{}
	for _, ds := range refs {
		for _, d := range uniq(ds) {
			users[d]++
		}
	}
	u := &Usage{Images: len(refs), Blobs: len(blobs), ByUID: map[int]int64{}, PerImage: map[string]ImageUsage{}}
	for d, b := range blobs {
		u.Bytes += b.size
		u.Allocated += b.blocks
		u.ByUID[b.uid] += b.size
		if users[d] > 0 {
			u.Referenced += b.size
		} else {
			u.Unreferenced += b.size
		}
	}
	for n, ds := range refs {
		var iu ImageUsage
		for _, d := range uniq(ds) {
			iu.Size += blobs[d].size
			if users[d] == 1 {
				iu.Exclusive += blobs[d].size
			}
		}
		u.PerImage[n] = iu
	}
	return u, nil
}

func uniq(ds []digest.Digest) []digest.Digest {
	out := slices.Clone(ds)
	slices.Sort(out)
	return slices.Compact(out)
}

// removingSuffix ends the temporary name of a layout being removed.
const removingSuffix = ".removing"

// Remove removes the image name: its layout disappears at once (renamed
// to a hidden name, then deleted), unless someone reads it (ErrInUse).
// Its blobs stay until a garbage collection finds that no image uses
// them.
func (s *Store) Remove(name string) error {
	if !safefile.ValidName(name) {
		return fmt.Errorf("%w: bad image name %q", safefile.ErrUnsafePath, name)
	}
	if dir, err := openDirAt(s.images, name); err == nil {
		// A layout without an index (left half-published) has nobody
		// reading it and goes too.
		lock, err := lockIndex(dir, unix.LOCK_EX)
		dir.Close()
		if errors.Is(err, ErrInUse) {
			return fmt.Errorf("%s: %w", s.ImagePath(name), ErrInUse)
		}
		if err == nil {
			defer lock.Close()
		}
	}
	tmp := "." + name + "." + randomToken() + removingSuffix
	err := unix.Renameat(int(s.images.Fd()), name, int(s.images.Fd()), tmp)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("no image %s in the layer store %s: %w", name, s.path, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("remove image %s: %w", name, err)
	}
	if err := removeAllAt(s.images, tmp); err != nil {
		return fmt.Errorf("remove image %s: %w", name, err)
	}
	return s.images.Sync()
}

// GCOptions tune a garbage collection.
type GCOptions struct {
	// Grace keeps every blob younger than this (by its mtime, which is
	// when it was written), whether an image uses it or not.
	Grace time.Duration
	// HoldExpiry is when a hold file, a temporary file or a layout left
	// half-published counts as left by a freeze that died: older ones
	// are removed and protect nothing.
	HoldExpiry time.Duration
	// Settle is the wait between taking candidates out of the store and
	// looking again for freezes that use them: on NFS, longer than the
	// clients' directory attribute cache (acdirmax, 60 s by default), so
	// that a hold another node wrote just before is seen.
	Settle time.Duration
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
}

// Defaults of a garbage collection.
const (
	DefaultGrace      = time.Hour
	DefaultHoldExpiry = 24 * time.Hour
	DefaultSettle     = 70 * time.Second
)

// GCResult says what a garbage collection did.
type GCResult struct {
	// Removed blobs, and the bytes they took.
	Removed int   `json:"removed"`
	Freed   int64 `json:"freed"`
	// Young blobs no image uses, kept for their grace period; Held, kept
	// because a running freeze uses them (Restored of these had been
	// taken out already).
	Young    int `json:"young"`
	Held     int `json:"held"`
	Restored int `json:"restored"`
	// StaleHolds and Temps are what dead freezes left and was removed.
	StaleHolds int `json:"stale_holds"`
	Temps      int `json:"temps"`
	// Index entries removed because their blob is gone.
	IndexEntries int `json:"index_entries"`
}

// deletingSuffix ends the name a blob gets while a collection decides on
// it.
const deletingSuffix = ".deleting"

// GC removes the blobs no image uses, safely against freezes writing into
// the store at the same moment, on any node, without a lock:
//
//   - a freeze names every blob it finds or writes in its hold file before
//     it looks for it (or renames it into place), and removes the hold only
//     after its image is published;
//   - a collection first takes each candidate (used by no image, held by no
//     freeze, older than Grace) out of the store under a hidden name, waits
//     Settle, and then reads the holds and the images again: a candidate
//     that one of them names now goes back under its name, the others are
//     deleted.
//
// A freeze that looked for a blob before it was taken out holds it since
// before that, so the second reading sees its hold or, once the hold is
// gone, its published image; one that looks afterwards does not find it
// and writes it again. Nothing an image uses is lost either way.
func (s *Store) GC(ctx context.Context, o GCOptions) (*GCResult, error) {
	if o.HoldExpiry <= 0 {
		o.HoldExpiry = DefaultHoldExpiry
	}
	res := &GCResult{}
	now, err := s.fsNow()
	if err != nil {
		return nil, err
	}
	// Phase 1: what is used, and what is not.
	held, err := s.held(now, o, res)
	if err != nil {
		return nil, err
	}
	refs, err := s.references(ctx, true)
	if err != nil {
		return nil, err
	}
	used := usedSet(refs, held)
	blobs, err := s.scanBlobs(ctx)
	if err != nil {
		return nil, err
	}
	type candidate struct {
		d    digest.Digest
		temp string
		size int64
	}
	var cands []candidate
	for d, b := range blobs {
		switch {
		case used[d]:
			if held[d] {
				res.Held++
			}
		case now.Sub(b.mtime) < o.Grace:
			res.Young++
		default:
			cands = append(cands, candidate{d: d, size: b.size})
		}
	}
	if o.DryRun {
		for _, c := range cands {
			res.Removed++
			res.Freed += c.size
		}
		return res, nil
	}
	token := randomToken()
	taken := cands[:0]
	for _, c := range cands {
		c.temp = "." + c.d.Encoded() + "." + token + deletingSuffix
		if err := unix.Renameat(int(s.blobs.Fd()), c.d.Encoded(), int(s.blobs.Fd()), c.temp); err == nil {
			taken = append(taken, c)
		}
	}
	// And what collections that died had taken out.
	for _, n := range mustNames(s.blobs) {
		hex, rest, ok := strings.Cut(strings.TrimPrefix(n, "."), ".")
		if !isTemp(n) || !ok || !strings.HasSuffix(rest, deletingSuffix) || strings.HasPrefix(rest, token) {
			continue
		}
		st, err := statAt(s.blobs, n)
		if err == nil && now.Sub(time.Unix(st.Ctim.Unix())) > o.HoldExpiry {
			taken = append(taken, candidate{d: digest.NewDigestFromEncoded(digest.SHA256, hex), temp: n, size: st.Size})
		}
	}

	// Phase 2: look again, then put back what is used and delete the rest.
	if o.Settle > 0 {
		select {
		case <-time.After(o.Settle):
		case <-ctx.Done():
		}
	}
	var again map[digest.Digest]bool
	held2, err := s.held(now, GCOptions{HoldExpiry: o.HoldExpiry}, &GCResult{})
	if err == nil {
		var refs2 map[string][]digest.Digest
		if refs2, err = s.references(context.WithoutCancel(ctx), true); err == nil {
			again = usedSet(refs2, held2)
		}
	}
	for _, c := range taken {
		if err != nil || again[c.d] {
			// When the second look failed, everything goes back.
			if rerr := safefile.RenameNoReplace(s.blobs, c.temp, c.d.Encoded()); errors.Is(rerr, unix.EEXIST) {
				// A freeze wrote it again meanwhile.
				unix.Unlinkat(int(s.blobs.Fd()), c.temp, 0)
			}
			res.Restored++
			res.Held++
			continue
		}
		if unix.Unlinkat(int(s.blobs.Fd()), c.temp, 0) == nil {
			res.Removed++
			res.Freed += c.size
		}
	}
	if err != nil {
		return res, fmt.Errorf("look again for freezes using the blobs (nothing was removed): %w", err)
	}
	s.blobs.Sync()
	s.cleanIndex(now, o, res)
	s.cleanTemps(now, o, res)
	return res, nil
}

func usedSet(refs map[string][]digest.Digest, held map[digest.Digest]bool) map[digest.Digest]bool {
	used := map[digest.Digest]bool{}
	for d := range held {
		used[d] = true
	}
	for _, ds := range refs {
		for _, d := range ds {
			used[d] = true
		}
	}
	return used
}

func mustNames(dir *os.File) []string {
	ns, _ := names(dir)
	return ns
}

// fsNow is the time on the store's filesystem (the server's clock on
// NFS), which the mtimes compared with it come from.
func (s *Store) fsNow() (time.Time, error) {
	temp := ".now." + randomToken() + tempSuffix
	f, err := safefile.CreateTemp(s.holds, temp, 0o600)
	if err != nil {
		return time.Time{}, fmt.Errorf("the layer store %s: %w", s.path, err)
	}
	defer unix.Unlinkat(int(s.holds.Fd()), temp, 0)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// held is what the live holds name; stale ones are removed (counted in
// res).
func (s *Store) held(now time.Time, o GCOptions, res *GCResult) (map[digest.Digest]bool, error) {
	ns, err := names(s.holds)
	if err != nil {
		return nil, fmt.Errorf("list the holds of %s: %w", s.path, err)
	}
	out := map[digest.Digest]bool{}
	for _, n := range ns {
		if isTemp(n) {
			continue
		}
		st, err := statAt(s.holds, n)
		if err != nil {
			continue
		}
		if now.Sub(time.Unix(st.Mtim.Unix())) > o.HoldExpiry {
			if unix.Unlinkat(int(s.holds.Fd()), n, 0) == nil {
				res.StaleHolds++
			}
			continue
		}
		b, err := readFileAt(s.holds, n, maxSmall)
		if errors.Is(err, unix.ENOENT) {
			continue // the freeze ended meanwhile
		}
		var h hold
		if err == nil {
			err = json.Unmarshal(b, &h)
		}
		if err != nil {
			return nil, fmt.Errorf("hold %s: %w", n, err)
		}
		for _, d := range h.Digests {
			out[d] = true
		}
	}
	return out, nil
}

// cleanIndex removes the index entries whose blob is gone.
func (s *Store) cleanIndex(now time.Time, o GCOptions, res *GCResult) {
	for _, n := range mustNames(s.diffIDs) {
		if isTemp(n) {
			continue
		}
		st, err := statAt(s.diffIDs, n)
		if err != nil || now.Sub(time.Unix(st.Mtim.Unix())) < o.Grace {
			continue
		}
		e, err := s.diffID(digest.NewDigestFromEncoded(digest.SHA256, n))
		if err == nil {
			if _, err := statAt(s.blobs, e.Digest.Encoded()); err == nil {
				continue
			}
		}
		if unix.Unlinkat(int(s.diffIDs.Fd()), n, 0) == nil {
			res.IndexEntries++
		}
	}
}

// cleanTemps removes what freezes and removals that died left under
// temporary names.
func (s *Store) cleanTemps(now time.Time, o GCOptions, res *GCResult) {
	for _, dir := range []*os.File{s.blobs, s.diffIDs, s.holds, s.images} {
		for _, n := range mustNames(dir) {
			if !isTemp(n) || strings.HasSuffix(n, deletingSuffix) {
				continue
			}
			st, err := statAt(dir, n)
			if err != nil || now.Sub(time.Unix(st.Ctim.Unix())) < o.HoldExpiry {
				continue
			}
			if removeAllAt(dir, n) == nil {
				res.Temps++
			}
		}
	}
}

// RemoveTask removes what the freeze token left in the store (after the
// agent restarted mid-freeze): its hold and its temporary files.
func (s *Store) RemoveTask(token string) error {
	if !safefile.ValidName(token) {
		return fmt.Errorf("%w: bad freeze token %q", safefile.ErrUnsafePath, token)
	}
	for _, dir := range []*os.File{s.blobs, s.diffIDs, s.holds, s.images} {
		for _, n := range mustNames(dir) {
			if isTemp(n) && strings.Contains(n, "."+token+".") && strings.HasSuffix(n, tempSuffix) {
				removeAllAt(dir, n)
			}
		}
	}
	return removeAllAt(s.holds, token)
}
