// Package units reads and writes the sizes and durations of baicommit's
// configuration and command lines: "500GiB", "1.5 TB", "30d", "90s".
package units

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is a number of bytes, written with an optional unit: B, KB/MB/GB/TB
// (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024), or K/M/G/T as the
// binary ones. A TOML integer is a number of bytes.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40}, {"PIB", 1 << 50},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"P", 1 << 50},
	{"B", 1},
}

// ErrNotSize marks text that is not a size.
var ErrNotSize = errors.New("not a size")

// ParseSize reads a size such as "500GiB", "1.5 TB" or "1048576".
func ParseSize(s string) (Size, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 || math.IsInf(n, 0) || math.IsNaN(n) || n*mult > math.MaxInt64 {
		return 0, fmt.Errorf("%w: %q: want a number of bytes with an optional unit, like 500GiB or 2TB", ErrNotSize, s)
	}
	return Size(n * mult), nil
}

// UnmarshalText parses a size (a TOML string).
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText writes the size in bytes.
func (s Size) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }

// String writes the size the way people read it: 1.5 GiB.
func (s Size) String() string { return Human(int64(s)) }

// Human writes n bytes the way people read them: 512 B, 1.5 KiB, 20.0 GiB.
func Human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ParseDuration reads a duration as time.ParseDuration does, and also
// whole days and weeks: "30d", "2w", "1d12h".
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	var total time.Duration
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		if i := strings.Index(t, u.suffix); i > 0 {
			n, err := strconv.Atoi(t[:i])
			if err != nil || n < 0 {
				return 0, fmt.Errorf("time: invalid duration %q", s)
			}
			total += time.Duration(n) * u.d
			t = t[i+1:]
		}
	}
	if t == "" {
		return total, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("time: invalid duration %q", s)
	}
	return total + d, nil
}

// Duration is a time.Duration written as "60s" or "30d" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a duration (ParseDuration).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
