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

// AudienceManager is the audience of the requests users send to
// baicommit-manager. All replicas are one audience: a load balancer may
// send a request to any of them. An agent's audience is its node name.
const AudienceManager = "baicommit-manager"

// bindingMagic starts every request payload, so a credential made for
// something else (munge -n, another program, a web login link) never
// passes as a request's. Version 2 added the audience.
const (
	bindingMagic    = "baicommit-request/2"
	oldBindingMagic = "baicommit-request/1"
)

// Binding is what a request's credential commits to: a credential taken off
// one request cannot authorize a different method, target, body or
// audience, and munged refuses it a second time.
type Binding struct {
	Method string
	// Target is the request URI: path and query, as sent.
	Target string
	// BodySHA256 is the hex SHA-256 of the request body.
	BodySHA256 string
	// Audience names who the request is for: AudienceManager, or the node
	// name of one agent. A credential captured on its way to one agent is
	// refused by every other.
	Audience string
}

// BindingFor returns the binding of one request.
func BindingFor(method, target string, body []byte, audience string) Binding {
	sum := sha256.Sum256(body)
	return Binding{Method: method, Target: target, BodySHA256: hex.EncodeToString(sum[:]), Audience: audience}
}

func (b Binding) marshal() []byte {
	return []byte(strings.Join([]string{bindingMagic, b.Method, b.Target, b.BodySHA256, b.Audience}, "\n"))
}

func parseBinding(p []byte) (Binding, error) {
	f := strings.Split(string(p), "\n")
	switch {
	case len(f) > 0 && f[0] == oldBindingMagic:
		return Binding{}, errors.New("the credential was made by an older baicommit, which names no audience: upgrade the baicommit CLI")
	case len(f) != 5 || f[0] != bindingMagic:
		return Binding{}, errors.New("the credential was not made for a baicommit request")
	}
	return Binding{Method: f[1], Target: f[2], BodySHA256: f[3], Audience: f[4]}, nil
}

// ErrNoCredential means a request carried no MUNGE credential.
var ErrNoCredential = errors.New("no MUNGE credential (send \"Authorization: MUNGE <credential>\")")

// ErrMismatch means a credential was made for another request.
var ErrMismatch = errors.New("the credential was made for another request")

// Sign sets req's Authorization header to a fresh credential bound to its
// method, target, body and audience. body must be the bytes req sends.
func (c Codec) Sign(ctx context.Context, req *http.Request, body []byte, audience string, o EncodeOptions) error {
	b := BindingFor(req.Method, req.URL.RequestURI(), body, audience)
	cred, err := c.Encode(ctx, b.marshal(), o)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", Scheme+" "+cred)
	return nil
}

// Verify decodes r's credential and checks that it was made for r and for
// audience. The credential is decoded before any of r's body is read, so
// that nobody without a credential makes the server read a body; then
// Verify reads the body (at most maxBody bytes), checks it against the
// credential and puts it back for the handler.
func (c Codec) Verify(ctx context.Context, r *http.Request, audience string, maxBody int64) (*Credential, Binding, error) {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, Scheme) {
		return nil, Binding{}, ErrNoCredential
	}
	dc, err := c.Decode(ctx, cred)
	if err != nil {
		return nil, Binding{}, err
	}
	got, err := parseBinding(dc.Payload)
	if err != nil {
		return nil, Binding{}, err
	}
	if got.Audience != audience {
		return nil, Binding{}, fmt.Errorf("%w: it was made for %q, this is %q", ErrMismatch, got.Audience, audience)
	}
	var body []byte
	if r.Body != nil {
		body, err = io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return nil, Binding{}, fmt.Errorf("reading the request body: %w", err)
		}
		if int64(len(body)) > maxBody {
			return nil, Binding{}, fmt.Errorf("request body larger than %d bytes", maxBody)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if got != BindingFor(r.Method, r.URL.RequestURI(), body, audience) {
		return nil, Binding{}, ErrMismatch
	}
	return dc, got, nil
}
