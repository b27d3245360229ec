package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/baicommit/baicommit/api"
)

// FreezeJob asks the agent to freeze the sessions of Slurm job job that its
// site policy selects (the epilog's request: root or an admin may name any
// user). The freezes run in the background; follow each task with Wait.
func (c *Client) FreezeJob(ctx context.Context, job string, req api.JobFreezeRequest) (*api.JobFreezes, error) {
	var res api.JobFreezes
	err := c.do(ctx, http.MethodPost, api.JobFreezesPath(url.PathEscape(job)), req, &res,
		http.StatusAccepted, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return &res, nil
}
