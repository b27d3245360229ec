package munge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Scheme is the Authorization scheme of a request signed with MUNGE:
// "Authorization: MUNGE <credential>".
const Scheme = "MUNGE"

// bindingMagic starts every request payload, so a credential made for
// something else (munge -n, another program) never passes as a request's.
const bindingMagic = "baicommit-request/1"

// Binding is what a request's credential commits to: a credential taken off
// one request cannot authorize a different method, target, body or acting
// user, and munged refuses it a second time.
type Binding struct {
	Method string
	// Target is the request URI: path and query, as sent.
	Target string
	// BodySHA256 is the hex SHA-256 of the request body.
	BodySHA256 string
	// As is the uid a trusted service acts for, empty when the signer
	// acts for itself.
	As string
}

// BindingFor returns the binding of one request.
func BindingFor(method, target string, body []byte, as string) Binding {
	sum := sha256.Sum256(body)
	return Binding{Method: method, Target: target, BodySHA256: hex.EncodeToString(sum[:]), As: as}
}

func (b Binding) marshal() []byte {
	return []byte(strings.Join([]string{bindingMagic, b.Method, b.Target, b.BodySHA256, b.As}, "\n"))
}

func parseBinding(p []byte) (Binding, error) {
	f := strings.Split(string(p), "\n")
	if len(f) != 5 || f[0] != bindingMagic {
		return Binding{}, errors.New("the credential was not made for a baicommit request")
	}
	return Binding{Method: f[1], Target: f[2], BodySHA256: f[3], As: f[4]}, nil
}

// ErrNoCredential means a request carried no MUNGE credential.
var ErrNoCredential = errors.New("no MUNGE credential (send \"Authorization: MUNGE <credential>\")")

// ErrMismatch means a credential was made for another request.
var ErrMismatch = errors.New("the credential was made for another request")

// Sign sets req's Authorization header to a fresh credential bound to its
// method, target, body and the acting uid as ("" when acting for oneself).
// body must be the bytes req sends.
func (c Codec) Sign(ctx context.Context, req *http.Request, body []byte, as string, o EncodeOptions) error {
	b := BindingFor(req.Method, req.URL.RequestURI(), body, as)
	cred, err := c.Encode(ctx, b.marshal(), o)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", Scheme+" "+cred)
	return nil
}

// Verify decodes r's credential and checks that it was made for r. It reads
// r's body (at most maxBody bytes) and puts it back for the handler.
func (c Codec) Verify(ctx context.Context, r *http.Request, maxBody int64) (*Credential, Binding, error) {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, Scheme) {
		return nil, Binding{}, ErrNoCredential
	}
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return nil, Binding{}, fmt.Errorf("reading the request body: %w", err)
		}
		if int64(len(body)) > maxBody {
			return nil, Binding{}, fmt.Errorf("request body larger than %d bytes", maxBody)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	dc, err := c.Decode(ctx, cred)
	if err != nil {
		return nil, Binding{}, err
	}
	got, err := parseBinding(dc.Payload)
	if err != nil {
		return nil, Binding{}, err
	}
	want := BindingFor(r.Method, r.URL.RequestURI(), body, got.As)
	if got != want {
		return nil, Binding{}, ErrMismatch
	}
	return dc, got, nil
}
