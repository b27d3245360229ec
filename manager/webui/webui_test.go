package webui

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestServe(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		path, ctype string
		code        int
		contains    string
	}{
		{"/web/", "text/html; charset=utf-8", 200, `<script src="app.js" defer>`},
		{"/web/login", "text/html; charset=utf-8", 200, `<script src="login.js" defer>`},
		{"/web/app.js", "text/javascript; charset=utf-8", 200, `"use strict"`},
		{"/web/style.css", "text/css; charset=utf-8", 200, ".spinner"},
		{"/web/nope.js", "", 404, ""},
		{"/web/static/app.js", "", 404, ""},
		{"/web/../webui.go", "", 404, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
			assert.Equal(t, w.Code, tc.code)
			if tc.code != 200 {
				return
			}
			assert.Check(t, is.Equal(w.Header().Get("Content-Type"), tc.ctype))
			assert.Check(t, is.Contains(w.Body.String(), tc.contains))
			assert.Check(t, is.Contains(w.Header().Get("Content-Security-Policy"), "script-src 'self'"))
			assert.Check(t, is.Equal(w.Header().Get("X-Frame-Options"), "DENY"))
			assert.Check(t, w.Header().Get("ETag") != "")
		})
	}

	// Revalidation answers 304 without the body.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/web/app.js", nil))
	req := httptest.NewRequest(http.MethodGet, "/web/app.js", nil)
	req.Header.Set("If-None-Match", w.Header().Get("ETag"))
	w2 := httptest.NewRecorder()
	h.ServeHTTP(w2, req)
	assert.Check(t, is.Equal(w2.Code, http.StatusNotModified))
}

// The page works where no CDN can be reached and under a strict CSP: it
// names no other origin, runs no inline script or handler, and every file
// it refers to is embedded.
func TestSelfContained(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	refs := regexp.MustCompile(`(?:src|href)="([^"#:]+)"`)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		assert.NilError(t, err)
		s := string(b)
		assert.Check(t, !external.MatchString(s), "%s refers to another origin: %q", p, external.FindString(s))
		if strings.HasSuffix(p, ".html") {
			assert.Check(t, !regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]+</script>`).MatchString(s), "%s has an inline script", p)
			assert.Check(t, !regexp.MustCompile(`\son[a-z]+=`).MatchString(s), "%s has an inline event handler", p)
			assert.Check(t, is.Contains(s, `<html lang="en">`))
			for _, m := range refs.FindAllStringSubmatch(s, -1) {
				_, err := static.ReadFile("static/" + m[1])
				assert.Check(t, err, "%s refers to %s, which is not embedded", p, m[1])
			}
		}
		return nil
	})
	assert.NilError(t, err)
}
