package cli

import (
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/baicommit/baicommit/client"
)

// env is what the commands need from the outside world. Run fills it from
// the real process; tests replace the clock, the terminal and the polling.
type env struct {
	stdout io.Writer
	stderr io.Writer
	// tty says stderr is a terminal, where commit --wait draws its
	// progress bar; elsewhere (logs, CI) it prints a line per phase.
	tty bool
	// width returns the terminal width the progress bar must fit in.
	width func() int
	now   func() time.Time
	// poll is how often commit --wait asks the agent for progress.
	poll time.Duration
}

// defaultWidth is assumed when the terminal will not tell its size.
const defaultWidth = 80

func newEnv(stdout, stderr io.Writer) *env {
	e := &env{
		// What others wrote reaches no terminal as control characters.
		stdout: newPrintable(stdout),
		stderr: newPrintable(stderr),
		width:  func() int { return defaultWidth },
		now:    time.Now,
		poll:   client.DefaultPoll,
	}
	// The bar goes to stderr, so that is the descriptor that must be a
	// terminal: with `commit --wait > log` the bar still shows, with
	// `2> log` the log gets plain lines instead of carriage returns.
	if fd, ok := fdOf(stderr); ok && term.IsTerminal(fd) {
		e.tty = true
		e.width = func() int {
			if w, _, err := term.GetSize(fd); err == nil && w > 0 {
				return w
			}
			return defaultWidth
		}
	}
	return e
}

// fdOf returns the file descriptor behind w, if w is a file such as
// os.Stderr.
func fdOf(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, false
	}
	return int(f.Fd()), true
}
