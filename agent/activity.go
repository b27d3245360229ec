package agent

import (
	"sync"
	"time"
)

// Activity counts work in flight (requests being served, tasks running)
// and remembers when the last of it ended, so that a socket-activated
// agent can exit once it has been idle long enough.
type Activity struct {
	mu    sync.Mutex
	n     int
	since time.Time
}

// NewActivity returns an idle Activity.
func NewActivity() *Activity { return &Activity{since: time.Now()} }

// Begin marks the start of some work.
func (a *Activity) Begin() {
	a.mu.Lock()
	a.n++
	a.mu.Unlock()
}

// End marks the end of work started with Begin.
func (a *Activity) End() {
	a.mu.Lock()
	a.n = max(0, a.n-1)
	if a.n == 0 {
		a.since = time.Now()
	}
	a.mu.Unlock()
}

// IdleFor reports how long nothing has been in flight (0 if busy).
func (a *Activity) IdleFor(now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n > 0 {
		return 0
	}
	return now.Sub(a.since)
}
