package manager

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/munge"
)

// BenchmarkAuthentication is what the manager spends to know who sends
// one request: a page's request with its signed cookie, against a CLI
// request with a fresh MUNGE credential that munged decodes (the naive
// way to authenticate a page that polls every second would be that). Both
// go through the whole handler and end in the same identity lookup. The
// MUNGE case needs munged; build with -tags libmunge for the shipped path.
func BenchmarkAuthentication(b *testing.B) {
	wt := newWebTester(b)
	cookie, _ := wt.cookie(time.Hour)
	b.Run("cookie", func(b *testing.B) {
		for b.Loop() {
			w := wt.do(http.MethodGet, "/web/api/me", "", func(r *http.Request) { r.AddCookie(cookie) })
			if w.Code != http.StatusOK {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
	b.Run("munge", func(b *testing.B) {
		codec := munge.Codec{}
		ctx := context.Background()
		sign := func() *http.Request {
			req := httptest.NewRequest(http.MethodGet, api.RouteVersion, nil)
			if err := codec.Sign(ctx, req, nil, munge.AudienceManager, munge.EncodeOptions{}); err != nil {
				b.Fatalf("!!! munged is needed for this case (scripts/setup.sh cluster starts it): %v", err)
			}
			return req
		}
		for b.Loop() {
			// Making the credential is the client's work, not the manager's.
			b.StopTimer()
			req := sign()
			b.StartTimer()
			w := httptest.NewRecorder()
			wt.h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
}
