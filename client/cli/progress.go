package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/baicommit/baicommit/internal/units"

	"github.com/baicommit/baicommit/api"
)

// progressBar draws a task's progress as one line on a terminal, redrawn in
// place with a carriage return.
type progressBar struct {
	w     io.Writer
	width func() int
	now   func() time.Time
	drawn bool
}

// update redraws the line for t. It is called for every poll.
func (b *progressBar) update(t *api.Task) {
	if t.Done() {
		// The result is printed next; a bar frozen at 99% would only
		// confuse.
		b.clear()
		return
	}
	line := printableString(barLine(t, elapsed(b.now(), t), b.width()))
	// "\x1b[K" erases what a longer previous line left behind: the bar's
	// own control sequences go around the printable filter.
	fmt.Fprintf(raw(b.w), "\r%s\x1b[K", line)
	b.drawn = true
}

// clear removes the line, so what follows starts on a clean one.
func (b *progressBar) clear() {
	if b.drawn {
		fmt.Fprint(raw(b.w), "\r\x1b[K")
		b.drawn = false
	}
}

// barLine renders the progress line for t in at most width-1 columns (a line
// that fills the last column wraps on some terminals, and a wrapped line
// cannot be redrawn with \r). It is ASCII only, so bytes are columns.
func barLine(t *api.Task, took time.Duration, width int) string {
	if t.Phase == api.PhasePushing && t.Push != nil {
		return pushLine(t.Push, took, width)
	}
	label := activity(t)
	tail := "  " + clock(took)
	p := t.Progress
	if t.Phase != api.PhaseExporting && p.BytesRead == 0 {
		return fit(label+"..."+tail, width)
	}
	// Numbers take room: name the phase in one word, so that the bar still
	// fits an 80-column terminal.
	if t.Phase != "" {
		label = t.Phase
	}
	pct := percent(p)
	if pct < 0 {
		return fit(fmt.Sprintf("%s  %s read  %s written%s", label, units.Human(p.BytesRead), units.Human(p.BytesWritten), tail), width)
	}
	head := fmt.Sprintf("%s  %s / %s %3d%% ", label, units.Human(p.BytesRead), units.Human(p.BytesTotal), pct)
	if p.SecondsLeft > 0 {
		tail += "  ~" + clock(time.Duration(p.SecondsLeft*float64(time.Second))) + " left"
	}
	rest := fmt.Sprintf(" %s written%s", units.Human(p.BytesWritten), tail)
	// The bar takes what room is left, within reason; on a narrow terminal
	// it goes, the numbers stay.
	room := width - 1 - len(head) - len(rest) - 2
	if room < 10 {
		return fit(head+" "+strings.TrimLeft(rest, " "), width)
	}
	return fit(head+"["+bar(pct, min(room, 40))+"]"+rest, width)
}

// bar draws pct percent of n cells, e.g. "=======>   ".
func bar(pct, n int) string {
	full := pct * n / 100
	if full >= n {
		return strings.Repeat("=", n)
	}
	return strings.Repeat("=", full) + ">" + strings.Repeat(" ", n-full-1)
}

// fit cuts s to width-1 columns.
func fit(s string, width int) string {
	if width > 1 && len(s) > width-1 {
		return s[:width-1]
	}
	return s
}

// phaseLog follows a task where no progress bar can be drawn (a log file, a
// CI job): it prints one line whenever the state or phase changes.
type phaseLog struct {
	w    io.Writer
	now  func() time.Time
	last string
}

// update prints a line for t if its state or phase changed. Final states
// are left to the result that follows.
func (l *phaseLog) update(t *api.Task) {
	if t.Done() {
		return
	}
	key := t.State + "/" + t.Phase
	if key == l.last {
		return
	}
	l.last = key
	fmt.Fprintf(l.w, "%s %s\n", clock(elapsed(l.now(), t)), activity(t))
}
