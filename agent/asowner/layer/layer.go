// Package layer produces the new layer of a freeze, the container's
// changes, as an uncompressed tar stream in one pass whose exact size is
// known before its first byte is written.
//
// Listing (List) walks the changes once: every entry's tar header is
// encoded with archive/tar, exactly as it will be written, and appended
// with the length of its content to a scratch file (not to memory, which
// must stay flat however many files a session holds). Writing (Stream)
// replays that list: the same header bytes, then each regular file's
// content cut or zero-padded to the size it had when listed, as GNU tar
// does with a file that changes while it is read (and such a file is
// named in a warning). Headers follow containers/storage's conventions
// (archive.FileInfoHeader, whiteouts as ".wh." files and
// ".wh..wh..opq" markers, user and security xattrs, hard links as links
// to the first path seen), so the layer is the one `podman commit` would
// make of the same changes.
package layer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"syscall"

	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/idtools"
	"golang.org/x/sys/unix"
)

// blockSize is tar's record unit.
const blockSize = 512

// endOfArchive is the two zero blocks that end a tar stream.
const endOfArchive = 2 * blockSize

// padded is n rounded up to whole blocks.
func padded(n int64) int64 { return (n + blockSize - 1) / blockSize * blockSize }

// List is a layer's entries, listed and measured, ready to be streamed.
type List struct {
	spill *bufio.ReadWriter
	file  *os.File
	// Size is the exact size of the layer's tar stream.
	Size int64
	// Entries is how many tar entries the layer holds.
	Entries int
	// Excluded counts what the exclusion patterns removed.
	Excluded Excluded
	// LeftOut are the container paths left out as the runtime's mount
	// placeholders.
	LeftOut []string

	seen  map[uint64]string // inode → first name, for hard links
	idmap *idtools.IDMappings
	done  bool
}

// Excluded is what exclusion patterns removed from a layer.
type Excluded struct {
	Entries int   `json:"entries"`
	Bytes   int64 `json:"bytes"`
}

// newList starts a list spilling into scratch, which must be empty, and
// mapping file owners back to the container's view with idmap (nil when
// the container uses the store's own mapping).
func newList(scratch *os.File, idmap *idtools.IDMappings) *List {
	return &List{
		spill: bufio.NewReadWriter(bufio.NewReaderSize(scratch, 1<<20), bufio.NewWriterSize(scratch, 1<<20)),
		file:  scratch, Size: endOfArchive, seen: map[uint64]string{}, idmap: idmap,
	}
}

// record is one entry of the spill: its encoded header, the bytes of
// content that follow it and where they are read from (relative to the
// content root; empty when there are none).
func (l *List) add(hdr *tar.Header, src string) error {
	enc, err := encodeHeader(hdr)
	if err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	size := int64(0)
	if hdr.Typeflag == tar.TypeReg {
		size = hdr.Size
	}
	var fixed [4 + 8 + 4]byte
	binary.LittleEndian.PutUint32(fixed[0:], uint32(len(enc)))
	binary.LittleEndian.PutUint64(fixed[4:], uint64(size))
	binary.LittleEndian.PutUint32(fixed[12:], uint32(len(src)))
	for _, b := range [][]byte{fixed[:], enc, []byte(src)} {
		if _, err := l.spill.Write(b); err != nil {
			return fmt.Errorf("write the entry list: %w", err)
		}
	}
	l.Size += int64(len(enc)) + padded(size)
	l.Entries++
	return nil
}

// encodeHeader is hdr as archive/tar writes it: one or more whole blocks
// (a PAX or GNU extension first when the header needs one).
func encodeHeader(hdr *tar.Header) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	// WriteHeader wrote the header blocks; no Flush or Close, which would
	// expect the entry's content.
	return buf.Bytes(), nil
}

// Close releases the scratch file.
func (l *List) Close() error { return l.file.Close() }

// Warnf reports a file that changed while the layer was written.
type Warnf func(format string, args ...any)

// Stream writes the layer's tar stream to w: exactly l.Size bytes.
// Content is read through open (relative to the content root the list was
// made from); a file that grew is cut at its listed size, one that shrank
// or vanished is padded with zeros, and both are reported to warn.
func (l *List) Stream(w io.Writer, open func(rel string) (*os.File, error), warn Warnf) (int64, error) {
	if l.done {
		return 0, errors.New("layer: streamed twice")
	}
	l.done = true
	if err := l.spill.Flush(); err != nil {
		return 0, fmt.Errorf("write the entry list: %w", err)
	}
	if _, err := l.file.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	l.spill.Reader.Reset(l.file)
	cw := &countWriter{w: w}
	zeros := make([]byte, 64<<10)
	buf := make([]byte, 1<<20)
	var enc []byte
	for range l.Entries {
		var fixed [16]byte
		if _, err := io.ReadFull(l.spill, fixed[:]); err != nil {
			return cw.n, fmt.Errorf("read the entry list: %w", err)
		}
		hlen := binary.LittleEndian.Uint32(fixed[0:])
		size := int64(binary.LittleEndian.Uint64(fixed[4:]))
		slen := binary.LittleEndian.Uint32(fixed[12:])
		enc = append(enc[:0], make([]byte, hlen+slen)...)
		if _, err := io.ReadFull(l.spill, enc); err != nil {
			return cw.n, fmt.Errorf("read the entry list: %w", err)
		}
		if _, err := cw.Write(enc[:hlen]); err != nil {
			return cw.n, err
		}
		if size == 0 {
			continue
		}
		src := string(enc[hlen:])
		if err := copyContent(cw, open, src, size, buf, zeros, warn); err != nil {
			return cw.n, err
		}
		if pad := padded(size) - size; pad > 0 {
			if _, err := cw.Write(zeros[:pad]); err != nil {
				return cw.n, err
			}
		}
	}
	if _, err := cw.Write(zeros[:endOfArchive]); err != nil {
		return cw.n, err
	}
	if cw.n != l.Size {
		return cw.n, fmt.Errorf("layer: wrote %d bytes, listed %d", cw.n, l.Size)
	}
	return cw.n, nil
}

// copyContent copies size bytes of src, GNU tar style.
func copyContent(w io.Writer, open func(string) (*os.File, error), src string, size int64, buf, zeros []byte, warn Warnf) error {
	name := "/" + src
	f, err := open(src)
	if err != nil {
		warn("%s vanished before it could be read (%v): the freeze holds %d zero bytes in its place", name, err, size)
		return writeZeros(w, size, zeros)
	}
	defer f.Close()
	n, err := io.CopyBuffer(w, io.LimitReader(onlyRead{f}, size), buf)
	if err != nil {
		if errors.As(err, new(writeError)) {
			return err
		}
		warn("%s could not be read after %d of %d bytes (%v): the rest is zeros", name, n, size, err)
	}
	if n < size {
		if err == nil {
			warn("%s shrank while it was read (%d of %d bytes): the rest is zeros", name, n, size)
		}
		return writeZeros(w, size-n, zeros)
	}
	var one [1]byte
	if m, _ := f.Read(one[:]); m > 0 {
		warn("%s grew while it was read: only its first %d bytes (its size when listed) are in the freeze", name, size)
	}
	return nil
}

// onlyRead hides f's WriteTo, so that a failed read and a failed write
// stay apart.
type onlyRead struct{ r io.Reader }

func (o onlyRead) Read(p []byte) (int, error) { return o.r.Read(p) }

func writeZeros(w io.Writer, n int64, zeros []byte) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// writeError marks an error of the writer the layer streams into.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		return n, writeError{err}
	}
	return n, nil
}

// header builds the tar header of the file at abs (lstat'ed as fi) under
// the layer name rel, as containers/storage's archive package would.
func (l *List) header(abs, rel string, fi os.FileInfo) (*tar.Header, error) {
	var link string
	if fi.Mode()&os.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(abs); err != nil {
			return nil, err
		}
	}
	hdr, err := archive.FileInfoHeader(rel, fi, link)
	if err != nil {
		return nil, err
	}
	if err := readXattrs(abs, hdr); err != nil {
		return nil, err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil && !fi.IsDir() && st.Nlink > 1 {
		if first, ok := l.seen[st.Ino]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			l.seen[st.Ino] = hdr.Name
		}
	}
	if l.idmap != nil && !l.idmap.Empty() && st != nil {
		uid, gid, err := l.idmap.ToContainer(idtools.IDPair{UID: int(st.Uid), GID: int(st.Gid)})
		if err != nil {
			return nil, fmt.Errorf("%s: owner %d:%d outside the container's mapping: %w", rel, st.Uid, st.Gid, err)
		}
		hdr.Uid, hdr.Gid = uid, gid
	}
	if hdr.Format == tar.FormatUnknown {
		// archive/tar would round; containers/storage truncates.
		hdr.ModTime = hdr.ModTime.Truncate(1e9)
	}
	return hdr, nil
}

// whiteout is the header that deletes rel (".wh." + its name) in a layer
// above, owned as the whiteout on disk was (or by root).
func whiteout(rel string, uid, gid int, mtime int64) *tar.Header {
	dir, base := path.Split(rel)
	return &tar.Header{Typeflag: tar.TypeReg, Name: dir + archive.WhiteoutPrefix + base, Mode: 0,
		Uid: uid, Gid: gid, ModTime: unixTime(mtime)}
}

// readXattrs copies the xattrs containers/storage keeps into hdr:
// security.capability and security.ima, and user.* but overlay's own.
func readXattrs(abs string, hdr *tar.Header) error {
	names, err := listXattrs(abs)
	if err != nil {
		return nil // no xattrs here (ENOTSUP), as archive does
	}
	for _, key := range names {
		keep := key == "security.capability" || key == "security.ima" ||
			(strings.HasPrefix(key, "user.") && !strings.HasPrefix(key, "user.overlay.") && !strings.HasPrefix(key, "user.fuseoverlayfs."))
		if !keep {
			continue
		}
		val, err := getXattr(abs, key)
		if err != nil {
			if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENODATA) {
				continue
			}
			return fmt.Errorf("read xattr %s of %s: %w", key, abs, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+key] = string(val)
	}
	return nil
}

func listXattrs(p string) ([]string, error) {
	buf := make([]byte, 1024)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		var out []string
		for _, s := range bytes.Split(buf[:n], []byte{0}) {
			if len(s) > 0 {
				out = append(out, string(s))
			}
		}
		return out, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) && len(buf) < 1<<20 {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
