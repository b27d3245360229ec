// Package munge encodes and decodes MUNGE credentials, the authentication
// service every Slurm cluster already runs, through the munge and unmunge
// programs. A credential proves the uid and gid of the process that encoded
// it to anyone on a host sharing the MUNGE key; munged rejects it once it has
// expired or when it is decoded a second time on the same host.
//
// Running the programs costs about 2 ms per credential and needs no C
// library, so the CLI stays a static binary. Servers built with cgo and the
// libmunge tag (the manager and the agent) call libmunge instead, which
// talks to munged over its socket without starting a process.
package munge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Status is a MUNGE error code (munge.h), which munge and unmunge also use
// as their exit status.
type Status int

// The codes this package tells apart; all others are reported by number.
const (
	StatusSocket       Status = 6  // munged cannot be reached
	StatusTimeout      Status = 7  // munged did not answer
	StatusBadCred      Status = 8  // not a credential at all
	StatusInvalid      Status = 14 // a credential, but not valid under this key
	StatusExpired      Status = 15
	StatusRewound      Status = 16 // encoded in the future: clocks disagree
	StatusReplayed     Status = 17
	StatusUnauthorized Status = 18 // restricted to another uid or gid
)

// Error is a failure to encode or decode a credential.
type Error struct {
	Status Status
	Msg    string // what munge or unmunge said, if anything
}

func (e *Error) Error() string {
	var what string
	switch e.Status {
	case 0:
		what = "MUNGE is not available"
	case StatusSocket, StatusTimeout:
		what = "munged cannot be reached (is the munge service running?)"
	case StatusBadCred, StatusInvalid:
		what = "invalid credential"
	case StatusExpired:
		what = "expired credential"
	case StatusRewound:
		what = "credential from the future (clocks out of sync)"
	case StatusReplayed:
		what = "replayed credential (each credential is good for one request)"
	case StatusUnauthorized:
		what = "credential not meant for this decoder"
	default:
		what = "MUNGE error " + strconv.Itoa(int(e.Status))
	}
	if e.Msg != "" && !strings.HasPrefix(strings.ToLower(what), strings.ToLower(e.Msg)) {
		return what + ": " + e.Msg
	}
	return what
}

// IsUnavailable reports whether err means munged could not be asked, as
// opposed to a credential that is bad.
func IsUnavailable(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Status == StatusSocket || e.Status == StatusTimeout || e.Status == 0
}

// Credential is what a decoded credential proves.
type Credential struct {
	UID, GID int
	// Encoded is when the credential was made; TTL how long it lives.
	Encoded time.Time
	TTL     time.Duration
	Payload []byte
}

// Codec encodes and decodes credentials. The zero value uses libmunge when
// it is linked in, else the programs in /usr/bin, and munged's default
// socket.
type Codec struct {
	// Munge and Unmunge are the programs' paths; empty means libmunge
	// if linked in, else /usr/bin/munge and /usr/bin/unmunge (PATH may be
	// unset, e.g. in a Slurm epilog). Setting either runs the programs.
	Munge, Unmunge string
	// Socket is munged's socket; empty means its default.
	Socket string
}

func (c Codec) useLib() bool    { return haveLib && c.Munge == "" && c.Unmunge == "" }
func (c Codec) munge() string   { return or(c.Munge, "/usr/bin/munge") }
func (c Codec) unmunge() string { return or(c.Unmunge, "/usr/bin/unmunge") }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// EncodeOptions narrow a credential.
type EncodeOptions struct {
	// TTL is the credential's lifetime; zero means munged's default.
	TTL time.Duration
	// RestrictUID, when set, lets only that uid decode the credential.
	RestrictUID *int
}

// Encode makes a credential carrying payload, for the calling process's uid
// and gid.
func (c Codec) Encode(ctx context.Context, payload []byte, o EncodeOptions) (string, error) {
	if c.useLib() {
		cred, err := c.encodeLib(ctx, payload, o)
		if err != nil {
			return "", fmt.Errorf("munge: %w", err)
		}
		return cred, nil
	}
	args := []string{}
	if c.Socket != "" {
		args = append(args, "--socket", c.Socket)
	}
	if o.TTL > 0 {
		args = append(args, "--ttl", strconv.Itoa(int(o.TTL.Round(time.Second)/time.Second)))
	}
	if o.RestrictUID != nil {
		args = append(args, "--restrict-uid", strconv.Itoa(*o.RestrictUID))
	}
	out, err := run(ctx, c.munge(), args, payload)
	if err != nil {
		return "", fmt.Errorf("munge: %w", err)
	}
	cred := strings.TrimSpace(string(out))
	if !strings.HasPrefix(cred, "MUNGE:") {
		return "", fmt.Errorf("munge: unexpected output %q", firstLine(cred))
	}
	return cred, nil
}

// Decode checks cred with munged and returns what it proves. Each
// credential decodes once per munged: a second Decode of the same one fails
// with StatusReplayed.
func (c Codec) Decode(ctx context.Context, cred string) (*Credential, error) {
	cred = strings.TrimSpace(cred)
	if !strings.HasPrefix(cred, "MUNGE:") || strings.ContainsAny(cred, " \t\r\n") || len(cred) > 64<<10 {
		return nil, &Error{Status: StatusBadCred, Msg: "not a MUNGE credential"}
	}
	if c.useLib() {
		cred, err := c.decodeLib(ctx, cred)
		if err != nil {
			return nil, fmt.Errorf("unmunge: %w", err)
		}
		return cred, nil
	}
	args := []string{"--numeric"}
	if c.Socket != "" {
		args = append(args, "--socket", c.Socket)
	}
	out, err := run(ctx, c.unmunge(), args, []byte(cred))
	if err != nil {
		return nil, fmt.Errorf("unmunge: %w", err)
	}
	return parseDecoded(out)
}

// parseDecoded reads unmunge --numeric output: "KEY: value" lines, a blank
// line, then LENGTH bytes of payload.
func parseDecoded(out []byte) (*Credential, error) {
	meta, payload, ok := bytes.Cut(out, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("unmunge: unexpected output %q", firstLine(string(out)))
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(meta), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	num := func(k string) (int64, error) {
		n, err := strconv.ParseInt(fields[k], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unmunge: bad %s %q", k, fields[k])
		}
		return n, nil
	}
	var vals [5]int64
	for i, k := range []string{"STATUS", "UID", "GID", "ENCODE_TIME", "LENGTH"} {
		n, err := num(k)
		if err != nil {
			return nil, err
		}
		vals[i] = n
	}
	if vals[0] != 0 {
		return nil, &Error{Status: Status(vals[0])}
	}
	if vals[4] < 0 || int64(len(payload)) < vals[4] {
		return nil, fmt.Errorf("unmunge: payload shorter than its LENGTH %d", vals[4])
	}
	ttl, _ := num("TTL")
	return &Credential{
		UID:     int(vals[1]),
		GID:     int(vals[2]),
		Encoded: time.Unix(vals[3], 0),
		TTL:     time.Duration(ttl) * time.Second,
		Payload: payload[:vals[4]],
	}, nil
}

func run(ctx context.Context, prog string, args []string, stdin []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.Bytes(), nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		msg := strings.TrimSpace(stderr.String())
		msg = strings.TrimPrefix(msg, prog+": ")
		if i := strings.Index(msg, "Error: "); i >= 0 {
			msg = msg[i+len("Error: "):]
		}
		return nil, &Error{Status: Status(exit.ExitCode()), Msg: firstLine(msg)}
	default:
		// Not installed, or killed: munged cannot be asked.
		return nil, &Error{Status: 0, Msg: err.Error()}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
