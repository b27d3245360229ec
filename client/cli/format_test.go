package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/baicommit/baicommit/internal/units"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
)

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{312*1024*1024 + 400*1024, "312.4 MiB"},
		{3 << 30, "3.0 GiB"},
		{5 << 40, "5.0 TiB"},
	}
	for _, tc := range tests {
		assert.Check(t, is.Equal(units.Human(tc.n), tc.want))
	}
}

func TestClock(t *testing.T) {
	assert.Check(t, is.Equal(clock(42*time.Second), "0:42"))
	assert.Check(t, is.Equal(clock(12*time.Minute+3*time.Second), "12:03"))
	assert.Check(t, is.Equal(clock(time.Hour+2*time.Minute+3*time.Second), "1:02:03"))
	assert.Check(t, is.Equal(clock(-time.Second), "0:00"))
}

func TestBarLine(t *testing.T) {
	task := &api.Task{State: api.StateRunning, Phase: api.PhaseExporting,
		Progress: api.Progress{BytesRead: 312*1024*1024 + 400*1024, BytesWritten: 100 << 20, BytesTotal: 1 << 30}}
	tests := []struct {
		name  string
		width int
		want  []string
	}{
		{"wide", 120, []string{"exporting  312.4 MiB", "312.4 MiB / 1.0 GiB", " 30% [", "] 100.0 MiB written", "0:42"}},
		{"80 columns", 80, []string{"] 100.0 MiB written"}},
		{"narrow", 60, []string{"312.4 MiB / 1.0 GiB", "30%"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line := barLine(task, 42*time.Second, tc.width)
			assert.Check(t, len(line) < tc.width, "%q is %d wide", line, len(line))
			for _, want := range tc.want {
				assert.Check(t, is.Contains(line, want))
			}
		})
	}

	unknown := *task
	unknown.Progress.BytesTotal = 0
	assert.Check(t, is.Equal(barLine(&unknown, time.Second, 120), "exporting  312.4 MiB read  100.0 MiB written  0:01"))

	committing := &api.Task{State: api.StateRunning, Phase: api.PhaseCommitting}
	assert.Check(t, is.Equal(barLine(committing, 5*time.Second, 120), "committing the container...  0:05"))
}

func TestProgressBarRedraws(t *testing.T) {
	var b strings.Builder
	bar := &progressBar{w: &b, width: func() int { return 100 }, now: func() time.Time { return now }}
	bar.update(&exporting)
	bar.update(&succeeded)
	out := b.String()
	assert.Check(t, strings.HasPrefix(out, "\r"))
	assert.Check(t, !strings.Contains(out, "\n"), "the bar must stay on one line: %q", out)
	assert.Check(t, strings.HasSuffix(out, "\r\x1b[K"), "a finished task clears the bar: %q", out)
}
