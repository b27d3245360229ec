package api

import "time"

// RouteWebLinks is the manager's: POST (MUNGE-authenticated, no body) makes
// a login link for the web page (WebLink, 201).
const RouteWebLinks = "/v1/web/links"

// WebLink is a login link of the web page: good once, until Expires. URL
// is absolute when the site set web_url, else a path to resolve against
// the manager's URL.
type WebLink struct {
	URL     string    `json:"url"`
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
}
