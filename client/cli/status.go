package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/baicommit/baicommit/internal/units"

	ucli "github.com/urfave/cli/v2"

	"github.com/baicommit/baicommit/api"
)

func (e *env) statusCommand() *ucli.Command {
	return &ucli.Command{
		Name:         "status",
		Usage:        "show one freeze",
		ArgsUsage:    "TASK",
		Flags:        []ucli.Flag{&ucli.BoolFlag{Name: "json", Usage: "print the task as JSON"}},
		OnUsageError: onUsageError,
		Action: func(c *ucli.Context) error {
			id, err := oneArg(c, "TASK")
			if err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			t, err := cl.Task(c.Context, id)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(e.stdout, t)
			}
			return printTask(e.stdout, t, e.now())
		},
	}
}

// printTask shows everything known about a task as aligned "Key: value"
// lines, leaving out what is unknown.
func printTask(w io.Writer, t *api.Task, now time.Time) error {
	tw := newTable(w)
	row := func(key, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", key, fmt.Sprintf(format, args...))
	}
	row("Task", "%s", t.ID)
	state := t.State
	if t.State == api.StateRunning && t.Phase != "" {
		state += " (" + activity(t) + ")"
	}
	row("State", "%s", state)
	container := t.Container
	if t.ContainerID != "" && !strings.HasPrefix(t.ContainerID, t.Container) {
		container += " (" + shortID(t.ContainerID) + ")"
	}
	row("Container", "%s", container)
	row("Owner", "%s (uid %d)", t.Owner, t.OwnerUID)
	if t.Requester != t.OwnerUID {
		row("Requested by", "uid %d", t.Requester)
	}
	row("Node", "%s", t.Node)
	if t.Job != "" {
		row("Job", "%s", t.Job)
	}
	row("Image", "%s", t.Image)
	if t.BaseImage != "" {
		row("Base image", "%s", t.BaseImage)
	}
	if a := t.Archive; a != nil {
		row("Archive", "%s", a.Path)
		if a.Sidecar != "" {
			row("Sidecar", "%s", a.Sidecar)
		}
		if a.Size > 0 {
			row("Size", "%s", sizeText(a))
		}
		if a.SHA256 != "" {
			row("SHA256", "%s", a.SHA256)
		}
	}
	if st := t.Store; st != nil {
		row("Store image", "%s", st.Path)
		row("Written", "%s into the layer store (%d layer(s) found there; the image is %s)", units.Human(st.Written), st.Reused, units.Human(st.Size))
	} else if t.Format != "" && t.Format != api.FormatArchive {
		row("Format", "%s", t.Format)
	}
	if p := t.Push; p != nil {
		row("Push", "%s (%s)", p.Ref, p.State)
		if p.Digest != "" {
			row("Digest", "%s", p.Digest)
		}
		if p.Error != "" {
			row("Push error", "%s", p.Error)
		}
	}
	if !t.Done() && (t.Progress.BytesRead > 0 || t.Progress.BytesWritten > 0) {
		row("Progress", "%s", progressText(t.Progress))
	}
	if t.Method != "" {
		row("Method", "%s", map[string]string{api.MethodDirect: "direct (read from the container's storage)", api.MethodCommit: "podman commit"}[t.Method])
	}
	if x := t.Exclusions; x != nil {
		if len(x.Placeholders) > 0 {
			row("Left out", "%s (empty mount points the runtime made)", strings.Join(x.Placeholders, " "))
		}
		if len(x.Patterns) > 0 {
			row("Excluded", "%d entries, %s (%s)", x.Entries, units.Human(x.Bytes), strings.Join(x.Patterns, " "))
		}
	}
	row("Created", "%s", timestamp(now, t.Created))
	if !t.Started.IsZero() {
		row("Started", "%s", timestamp(now, t.Started))
	}
	if !t.Finished.IsZero() {
		row("Finished", "%s", timestamp(now, t.Finished))
	} else {
		row("Elapsed", "%s", clock(elapsed(now, t)))
	}
	if d := durationsText(t.Durations); d != "" {
		row("Durations", "%s", d)
	}
	for i, warn := range t.Warnings {
		key := ""
		if i == 0 {
			key = "Warnings:"
		}
		fmt.Fprintf(tw, "%s\t%s\n", key, warn)
	}
	if t.Error != "" {
		row("Error", "%s", t.Error)
	}
	return tw.Flush()
}

// progressText is a running task's progress in words.
func progressText(p api.Progress) string {
	s := units.Human(p.BytesRead) + " read"
	if pct := percent(p); pct >= 0 {
		s = fmt.Sprintf("%s of %s (%d%%)", s, units.Human(p.BytesTotal), pct)
	}
	s += ", " + units.Human(p.BytesWritten) + " written"
	if p.SecondsLeft > 0 {
		s += ", about " + clock(time.Duration(p.SecondsLeft*float64(time.Second))) + " left"
	}
	return s
}

// durationsText lists the phase durations that are known.
func durationsText(d api.Durations) string {
	var parts []string
	for _, p := range []struct {
		name string
		s    float64
	}{{"commit", d.Commit}, {"export", d.Export}, {"push", d.Push}, {"total", d.Total}} {
		if p.s > 0 {
			parts = append(parts, p.name+" "+seconds(p.s))
		}
	}
	return strings.Join(parts, ", ")
}

// shortID shortens a container id the way podman shows it.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
