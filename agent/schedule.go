package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/baicommit/baicommit/internal/httperr"
)

// scheduler shares the node's freeze slots (max_parallel) between users:
// nobody holds more than max_running_per_user of them, nobody waits with
// more than max_queued_per_user freezes, and a free slot goes to the users
// who wait in turn, so that one user's many or stuck freezes never starve
// another's. Freezes at the end of a Slurm job go first: the node is being
// given to someone else. Every slot is held for at most task_timeout (the
// task's deadline, run).
type scheduler struct {
	max, perUser, queuedPerUser int

	mu      sync.Mutex
	total   int             // slots held
	running map[int]int     // uid → slots held
	queues  map[int][]*slot // uid → waiting, epilog ones first, then oldest first
	turn    []int           // users with waiting freezes, in the order they get a slot
}

// slot is one freeze's place: in its user's queue, then holding a slot.
type slot struct {
	uid     int
	epilog  bool
	granted chan struct{} // closed once it holds a slot
	held    bool
	done    bool
}

func newScheduler(max, perUser, queuedPerUser int) *scheduler {
	return &scheduler{max: max, perUser: perUser, queuedPerUser: queuedPerUser,
		running: map[int]int{}, queues: map[int][]*slot{}}
}

// errTooMany is what a user hears with max_queued_per_user freezes waiting.
func (s *scheduler) errTooMany() error {
	return httperr.New(httperr.TooMany, "you already have %d freezes waiting on this node (max_queued_per_user): wait for them to start (`baicommit list`)", s.queuedPerUser)
}

// admit puts a freeze of uid in line, or says why it cannot wait.
func (s *scheduler) admit(uid int, epilog bool) (*slot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[uid]
	if len(q) >= s.queuedPerUser {
		return nil, s.errTooMany()
	}
	sl := &slot{uid: uid, epilog: epilog, granted: make(chan struct{})}
	i := len(q)
	if epilog {
		// Behind the other epilog freezes, before everything else.
		i = slices.IndexFunc(q, func(o *slot) bool { return !o.epilog })
		if i < 0 {
			i = len(q)
		}
	}
	s.queues[uid] = slices.Insert(q, i, sl)
	if len(q) == 0 {
		s.turn = append(s.turn, uid)
	}
	s.dispatch()
	return sl, nil
}

// wait blocks until sl holds a slot, or ctx ends (and sl is given up).
func (s *scheduler) wait(ctx context.Context, sl *slot) error {
	select {
	case <-sl.granted:
		return nil
	case <-ctx.Done():
		s.release(sl)
		return ctx.Err()
	}
}

// release gives up sl: its slot, or its place in line.
func (s *scheduler) release(sl *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl.done {
		return
	}
	sl.done = true
	if sl.held {
		s.total--
		if s.running[sl.uid]--; s.running[sl.uid] == 0 {
			delete(s.running, sl.uid)
		}
	} else {
		s.remove(sl.uid, sl)
	}
	s.dispatch()
}

func (s *scheduler) remove(uid int, sl *slot) {
	q := slices.DeleteFunc(s.queues[uid], func(o *slot) bool { return o == sl })
	if len(q) > 0 {
		s.queues[uid] = q
		return
	}
	delete(s.queues, uid)
	s.turn = slices.DeleteFunc(s.turn, func(u int) bool { return u == uid })
}

// dispatch hands free slots to waiting freezes: epilog ones first, then
// the users in turn, each at most perUser at once. Callers hold s.mu.
func (s *scheduler) dispatch() {
	for s.total < s.max {
		pick := -1
		for i, uid := range s.turn {
			if s.running[uid] >= s.perUser {
				continue
			}
			if s.queues[uid][0].epilog {
				pick = i
				break
			}
			if pick < 0 {
				pick = i
			}
		}
		if pick < 0 {
			return
		}
		uid := s.turn[pick]
		sl := s.queues[uid][0]
		s.remove(uid, sl)
		if len(s.queues[uid]) > 0 {
			// Served: to the back of the line.
			s.turn = append(slices.DeleteFunc(s.turn, func(u int) bool { return u == uid }), uid)
		}
		sl.held = true
		s.total++
		s.running[uid]++
		close(sl.granted)
	}
}

// taskTimeoutError is a task stopped at its deadline.
type taskTimeoutError struct {
	limit time.Duration
	err   error
}

func (e *taskTimeoutError) Error() string {
	return fmt.Sprintf("the freeze took longer than this node allows (task_timeout %s) and was stopped; nothing was written. A session this large needs a longer task_timeout: ask your site admin", e.limit)
}

func (e *taskTimeoutError) Unwrap() error { return e.err }

// overrun turns the error of a task whose deadline passed into one that
// says so (whatever failed first, the cause is the deadline).
func overrun(ctx context.Context, limit time.Duration, err error) error {
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &taskTimeoutError{limit: limit, err: err}
	}
	return err
}
