package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/baicommit/baicommit/api"
)

// writeJSON prints v as indented JSON, the format every --json flag uses,
// with the characters a terminal would act on escaped (jsonSafe).
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	if _, err := raw(w).Write(append(jsonSafe(b), '\n')); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

// seconds formats a duration the API gives in seconds, e.g. "42.1s".
func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Millisecond).String()
}

// clock formats an elapsed time the way progress displays do: "0:42",
// "12:03", "1:02:03".
func clock(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int(d / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// ago formats t relative to now, like podman does in its tables.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return fmt.Sprintf("%d %ss ago", n, unit)
	}
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return plural(int(d/time.Second), "second")
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour")
	case d < 30*24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day")
	default:
		return t.Local().Format("2006-01-02")
	}
}

// timestamp formats t with its age, for detailed views.
func timestamp(now, t time.Time) string {
	return fmt.Sprintf("%s (%s)", t.Local().Format("2006-01-02 15:04:05"), ago(now, t))
}

// percent is how far the export got, or -1 when the total is unknown. The
// total is an estimate, so it is capped below 100 until the task is done.
func percent(p api.Progress) int {
	if p.BytesTotal <= 0 {
		return -1
	}
	pct := int(p.BytesRead * 100 / p.BytesTotal)
	return min(max(pct, 0), 99)
}

// phaseLabels say what each phase is doing, for people.
var phaseLabels = map[string]string{
	api.PhaseConnecting: "connecting to Podman",
	api.PhasePausing:    "pausing the container",
	api.PhaseCommitting: "committing the container",
	api.PhaseExporting:  "writing the archive",
	api.PhaseFinishing:  "finishing",
	api.PhasePushing:    "pushing to the registry",
}

// activity describes what a task is doing right now.
func activity(t *api.Task) string {
	if t.State == api.StateRunning {
		if l, ok := phaseLabels[t.Phase]; ok {
			return l
		}
		if t.Phase != "" {
			return t.Phase
		}
	}
	if t.State == api.StateQueued {
		return "queued"
	}
	return t.State
}

// shortState is the STATE column of a task table: the state, or for a
// running task its phase and percentage.
func shortState(t *api.Task) string {
	if t.State != api.StateRunning || t.Phase == "" {
		return t.State
	}
	if pct := percent(t.Progress); t.Phase == api.PhaseExporting && pct >= 0 {
		return fmt.Sprintf("%s %d%%", t.Phase, pct)
	}
	return t.Phase
}

// oneLine squeezes a possibly multi-line message into one line of at most
// max runes, for table cells.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

// orDash shows empty table cells as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// elapsed is how long a task has been going, or went, counted from the
// request (queueing included: that is what the user waited through).
func elapsed(now time.Time, t *api.Task) time.Duration {
	end := now
	if !t.Finished.IsZero() {
		end = t.Finished
	}
	return end.Sub(t.Created)
}

// newTable returns the tabwriter all tables and key/value views use.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}
