package policy_test

import (
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/policy"
)

func TestUserDir(t *testing.T) {
	for _, tc := range []struct{ save, want string }{
		{"/srv/baicommit/{user}", "/srv/baicommit/alice"},
		{"/srv/{user}/{date}", "/srv/alice"},
		{"/srv/{node}/{user}", "/srv"},
		{"/srv/u{uid}-{user}/x/{job}", "/srv/u1000-alice/x"},
		{"/scratch/frozen", "/scratch/frozen"},
		{"/{node}", "/"},
	} {
		p := policy.Policy{SavePath: tc.save}
		assert.Check(t, is.Equal(p.UserDir("alice", "1000"), tc.want), tc.save)
	}
	p := policy.Policy{SavePath: "/srv/{user}"}
	assert.Check(t, is.Equal(p.UserDir("../x", "1000"), ""))
}
