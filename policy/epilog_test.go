package policy_test

import (
	"testing"

	"gotest.tools/v3/assert"

	"github.com/baicommit/baicommit/policy"
)

func TestValidateEpilogFreeze(t *testing.T) {
	for _, tc := range []struct {
		value, want string
	}{
		{policy.EpilogLabelled, policy.EpilogLabelled}, {policy.EpilogJob, policy.EpilogJob},
		{policy.EpilogOff, policy.EpilogOff}, {"", policy.EpilogLabelled},
		{"Labelled", ""}, {"all", ""},
	} {
		t.Run(tc.value, func(t *testing.T) {
			p := policy.Default()
			p.EpilogFreeze = tc.value
			err := p.Validate()
			if tc.want != "" {
				assert.NilError(t, err)
				assert.Equal(t, p.EpilogFreeze, tc.want)
				return
			}
			assert.ErrorContains(t, err, "epilog_freeze")
		})
	}
}
