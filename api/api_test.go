package api

import (
	"testing"

	"gotest.tools/v3/assert"
)

func TestValidJob(t *testing.T) {
	for _, tc := range []struct {
		s        string
		id, exit bool
	}{
		{s: "4242", id: true},
		{s: "4242_7", id: true},
		{s: "0:0", exit: true},
		{s: "1:15", exit: true},
		{s: ""},
		{s: "42;rm"},
		{s: "../42"},
		{s: "1234567890123"},
		{s: "1:2:3"},
	} {
		assert.Check(t, ValidJobID(tc.s) == tc.id, "ValidJobID(%q)", tc.s)
		assert.Check(t, ValidJobExit(tc.s) == tc.exit, "ValidJobExit(%q)", tc.s)
	}
}
