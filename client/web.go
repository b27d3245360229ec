package client

import (
	"context"
	"net/http"
	"strings"

	"github.com/baicommit/baicommit/api"
)

// WebLink asks the manager for a login link of its web page, good once
// until it expires. A link the manager gives relative to itself comes back
// resolved against the manager's URL.
func (c *Client) WebLink(ctx context.Context) (*api.WebLink, error) {
	var l api.WebLink
	if err := c.do(ctx, http.MethodPost, api.RouteWebLinks, nil, &l, http.StatusCreated); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(l.URL, "http://") && !strings.HasPrefix(l.URL, "https://") {
		l.URL = strings.TrimRight(c.base.String(), "/") + "/" + strings.TrimPrefix(l.URL, "/")
	}
	return &l, nil
}
