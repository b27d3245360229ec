package units

import (
	"errors"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		err  bool
	}{
		{"1048576", 1 << 20, false},
		{"500GiB", 500 << 30, false},
		{"1.5 TB", 1.5e12, false},
		{"2tb", 2e12, false},
		{"10M", 10 << 20, false},
		{"0", 0, false},
		{"lots", 0, true},
		{"-1GiB", 0, true},
		{"", 0, true},
		{"1e30TB", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if tc.err {
			assert.Check(t, errors.Is(err, ErrNotSize), "%q: %v", tc.in, err)
			continue
		}
		assert.Check(t, err, "%q", tc.in)
		assert.Check(t, is.Equal(got, tc.want), "%q", tc.in)
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"90s", 90 * time.Second, false},
		{"30d", 30 * 24 * time.Hour, false},
		{"2w", 14 * 24 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"soon", 0, true},
		{"-3d", 0, true},
	} {
		got, err := ParseDuration(tc.in)
		if tc.err {
			assert.Check(t, err != nil, "%q", tc.in)
			continue
		}
		assert.Check(t, err, "%q", tc.in)
		assert.Check(t, is.Equal(got, tc.want), "%q", tc.in)
	}
}

func TestHuman(t *testing.T) {
	assert.Check(t, is.Equal(Human(512), "512 B"))
	assert.Check(t, is.Equal(Human(1536), "1.5 KiB"))
	assert.Check(t, is.Equal(Human(20<<30), "20.0 GiB"))
}
