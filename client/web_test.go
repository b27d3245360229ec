package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/client"
)

func TestWebLink(t *testing.T) {
	for _, tc := range []struct {
		name, link, prefix, want string
	}{
		{"relative to the manager", "web/login#MUNGE:abc:", "", "/web/login#MUNGE:abc:"},
		{"below a path prefix", "web/login#MUNGE:abc:", "/baicommit", "/baicommit/web/login#MUNGE:abc:"},
		{"the site's web_url", "https://ood.example.org/web/login#MUNGE:abc:", "", "https://ood.example.org/web/login#MUNGE:abc:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				assert.Check(t, is.Equal(r.Method, http.MethodPost))
				assert.Check(t, is.Equal(r.URL.Path, tc.prefix+api.RouteWebLinks))
				writeJSON(t, w, http.StatusCreated, api.WebLink{URL: tc.link, User: "alice"})
			}))
			t.Cleanup(srv.Close)
			c, err := client.New(srv.URL+tc.prefix, client.WithManager())
			assert.NilError(t, err)
			l, err := c.WebLink(context.Background())
			assert.NilError(t, err)
			want := tc.want
			if want[0] == '/' {
				want = srv.URL + want
			}
			assert.Check(t, is.Equal(l.URL, want))
			assert.Check(t, is.Equal(l.User, "alice"))
		})
	}
}
