package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/baicommit/baicommit/api"
)

// DefaultPoll is the polling interval Wait uses when given none.
const DefaultPoll = 200 * time.Millisecond

// Wait polls the task every poll interval until it is done (succeeded or
// failed) and returns its final state. onUpdate, if not nil, sees every state
// fetched, the final one included, which is what progress displays need.
//
// Wait returns an error only when it cannot learn the outcome (the agent is
// unreachable, the task vanished, ctx ended); a failed freeze is a task with
// State api.StateFailed and a nil error. Ending ctx stops the waiting, not
// the freeze.
func (c *Client) Wait(ctx context.Context, id string, poll time.Duration, onUpdate func(*api.Task)) (*api.Task, error) {
	if id == "" {
		return nil, errors.New("no task id given")
	}
	if poll <= 0 {
		poll = DefaultPoll
	}
	timer := time.NewTimer(0) // first look right away
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for task %s: %w", id, ctx.Err())
		case <-timer.C:
		}
		t, err := c.Task(ctx, id)
		if err != nil {
			return nil, err
		}
		if onUpdate != nil {
			onUpdate(t)
		}
		if t.Done() {
			return t, nil
		}
		timer.Reset(poll)
	}
}
