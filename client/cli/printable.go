package cli

import (
	"bytes"
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// printable is the writer the commands print through: it passes text on
// without the characters a terminal acts on instead of showing them (C0
// and C1 controls but newline and tab, DEL, the bidirectional overrides
// that reorder what is shown) and with invalid UTF-8 replaced by U+FFFD.
// Task errors and warnings, container and image names, sidecar fields are
// written by others (a user's Podman, another user's file, a registry): no
// terminal gets escape sequences from them. JSON output goes around it
// (writeJSON), escaped instead, so that scripts get the data as it is.
type printable struct {
	w io.Writer
	// pending is the start of a character cut by the end of a write.
	pending []byte
}

func newPrintable(w io.Writer) *printable { return &printable{w: w} }

func (p *printable) Write(b []byte) (int, error) {
	data := append(p.pending, b...)
	// Keep a character the write ends in the middle of for the next one.
	cut := len(data)
	for i := len(data) - 1; i >= 0 && i >= len(data)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(data[i]) {
			if !utf8.FullRune(data[i:]) {
				cut = i
			}
			break
		}
	}
	out := printableBytes(data[:cut])
	p.pending = append([]byte(nil), data[cut:]...)
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// printableBytes is b without what printable drops.
func printableBytes(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n == 1:
			out = utf8.AppendRune(out, utf8.RuneError)
		case r == '\n' || r == '\t':
			out = append(out, b[:n]...)
		case unicode.IsControl(r) || isBidiControl(r):
		default:
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return out
}

// printableString is s as printable writes it.
func printableString(s string) string { return string(printableBytes([]byte(s))) }

// isBidiControl reports the characters that reorder how text is shown.
func isBidiControl(r rune) bool {
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c
}

// raw is the writer underneath w, for output that takes care of itself
// (JSON, the progress bar's own control sequences).
func raw(w io.Writer) io.Writer {
	if p, ok := w.(*printable); ok {
		return p.w
	}
	return w
}

// jsonSafe escapes in encoded JSON the characters encoding/json leaves
// as they are but a terminal acts on (DEL, C1 controls, the bidirectional
// controls): they can only be inside strings, where \u escapes mean the
// same.
func jsonSafe(b []byte) []byte {
	var out bytes.Buffer
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == 0x7f || r >= 0x80 && r <= 0x9f || isBidiControl(r) {
			fmt.Fprintf(&out, `\u%04x`, r)
		} else {
			out.Write(b[:n])
		}
		b = b[n:]
	}
	return out.Bytes()
}
