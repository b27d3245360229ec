package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, ünïcode\tand tabs\n": "plain text, ünïcode\tand tabs\n",
		"\x1b]0;owned\x07title":           "]0;ownedtitle",
		"\x1b[31mred\x1b[0m":              "[31mred[0m",
		"over\rwrite":                     "overwrite",
		"c1 \u009b31m csi":                "c1 31m csi",
		"bad \xff\x9b bytes":              "bad \ufffd\ufffd bytes",
		"del\x7f":                         "del",
		"bidi \u202egnp.exe\u202c":        "bidi gnp.exe",
	} {
		var buf bytes.Buffer
		p := newPrintable(&buf)
		// Written a byte at a time: characters cut between writes survive.
		for i := range len(in) {
			_, err := p.Write([]byte{in[i]})
			assert.NilError(t, err)
		}
		assert.Check(t, is.Equal(buf.String(), want), "%q", in)
	}
}

// JSON output keeps the data, escaped where a terminal would act on it.
func TestJSONSafe(t *testing.T) {
	v := map[string]string{"e": "\x1b[31m\u009b\x7f\u202e ok"}
	var buf bytes.Buffer
	assert.NilError(t, writeJSON(newPrintable(&buf), v))
	assert.Check(t, is.Equal(buf.String(), "{\n  \"e\": \"\\u001b[31m\\u009b\\u007f\\u202e ok\"\n}\n"))
	var back map[string]string
	assert.NilError(t, json.Unmarshal(buf.Bytes(), &back))
	assert.Check(t, is.DeepEqual(back, v))
}

// What a task says (written by a user's Podman, a registry, another user)
// reaches the terminal without its escape sequences.
func TestStatusStripsControlCharacters(t *testing.T) {
	evil := "\x1b]0;pwned\x07\x1b[2J"
	task := api.Task{ID: "abc.n1", State: api.StateFailed, Container: "box", Owner: "alice",
		BaseImage: "localhost/busybox" + evil, Image: "localhost/x:1", Error: "commit failed: " + evil + "bye",
		Warnings: []string{"w" + evil}, Created: now}
	addr := fakeAgent(t, map[string]http.HandlerFunc{"GET " + api.RouteTask + "abc.n1": sequence(task)})
	r := run(t, addr, "status", "abc.n1")
	assert.Check(t, !strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07"), "%q", r.stdout+r.stderr)
	assert.Check(t, is.Contains(r.stdout+r.stderr, "commit failed: ]0;pwned[2Jbye"))
}
