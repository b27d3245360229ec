//go:build !(cgo && libmunge)

package munge

import (
	"context"
	"errors"
)

// haveLib says libmunge is linked in; without it (CGO_ENABLED=0, as the
// CLI is built, or without the libmunge build tag) the Codec runs munge
// and unmunge.
const haveLib = false

var errNoLib = errors.New("built without libmunge")

func (Codec) encodeLib(context.Context, []byte, EncodeOptions) (string, error) { return "", errNoLib }

func (Codec) decodeLib(context.Context, string) (*Credential, error) { return nil, errNoLib }
