package websession

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestEncodeDecode(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	sg, err := NewSigner([]byte(strings.Repeat("k", 32)))
	assert.NilError(t, err)
	other, err := NewSigner([]byte(strings.Repeat("x", 32)))
	assert.NilError(t, err)
	s := New(1001, "alice", time.Hour, now)
	good := sg.Encode(s)

	payload, mac, _ := strings.Cut(good, ".")
	evil := New(0, "root", time.Hour, now)
	evilPayload, _, _ := strings.Cut(other.Encode(evil), ".")

	for _, tc := range []struct {
		name  string
		value string
		at    time.Time
		want  error
	}{
		{"good", good, now, nil},
		{"just before expiry", good, now.Add(time.Hour - time.Second), nil},
		{"expired", good, now.Add(time.Hour), ErrExpired},
		{"signed with another key", other.Encode(s), now, ErrForged},
		{"payload swapped under a good mac", evilPayload + "." + mac, now, ErrForged},
		{"no mac", payload, now, ErrMalformed},
		{"mac not base64", payload + ".!!", now, ErrMalformed},
		{"empty", "", now, ErrMalformed},
		{"huge", strings.Repeat("a", 5000) + "." + mac, now, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sg.Decode(tc.value, tc.at)
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(got.UID, 1001))
			assert.Check(t, is.Equal(got.Name, "alice"))
			assert.Check(t, is.Equal(got.ID, s.ID))
			assert.Check(t, got.Expires.Equal(s.Expires))
		})
	}
}

func TestNewDrawsAFreshID(t *testing.T) {
	now := time.Now()
	a, b := New(1, "a", time.Minute, now), New(1, "a", time.Minute, now)
	assert.Check(t, a.ID != b.ID, "two sign-ins got the same session id")
	assert.Check(t, len(a.ID) >= 20)
}

func TestCSRF(t *testing.T) {
	sg, err := NewSigner(RandomKey())
	assert.NilError(t, err)
	other, err := NewSigner(RandomKey())
	assert.NilError(t, err)
	tok := sg.CSRFToken("sid-1")
	assert.Check(t, sg.CheckCSRF("sid-1", tok))
	assert.Check(t, !sg.CheckCSRF("sid-2", tok), "a token passed for another session")
	assert.Check(t, !sg.CheckCSRF("sid-1", other.CSRFToken("sid-1")), "another key's token passed")
	assert.Check(t, !sg.CheckCSRF("sid-1", ""))
	assert.Check(t, !sg.CheckCSRF("", sg.CSRFToken("")), "an empty binding passed")
	// A session cookie's MAC is no request token, even over the same bytes.
	s := New(1, "a", time.Minute, time.Now())
	_, mac, _ := strings.Cut(sg.Encode(s), ".")
	assert.Check(t, !sg.CheckCSRF(s.ID, mac))
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		assert.NilError(t, os.WriteFile(p, []byte(content), mode))
		assert.NilError(t, os.Chmod(p, mode))
		return p
	}
	key := strings.Repeat("s", 48)
	good := write("good", key+"\n", 0o600)
	b, err := LoadKey(good)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(b), key))

	for _, tc := range []struct {
		name, path, want string
	}{
		{"readable by others", write("open", key, 0o644), "chmod 600"},
		{"too short", write("short", "tiny", 0o600), "want at least 32"},
		{"missing", filepath.Join(dir, "none"), "no such file"},
		{"a directory", dir, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadKey(tc.path)
			assert.ErrorContains(t, err, tc.want)
		})
	}
	_, err = NewSigner([]byte("short"))
	assert.ErrorContains(t, err, "at least 32")
}

// A session revoked on one replica is revoked on another that shares the
// directory; a revocation ends with its session.
func TestRevocations(t *testing.T) {
	dir := t.TempDir()
	assert.NilError(t, os.Chmod(dir, 0o700))
	one, err := NewRevocations(dir)
	assert.NilError(t, err)
	two, err := NewRevocations(dir)
	assert.NilError(t, err)
	alone, err := NewRevocations("")
	assert.NilError(t, err)
	now := time.Now()
	s := New(1000, "alice", time.Hour, now)
	other := New(1000, "alice", time.Hour, now)
	for _, rv := range []*Revocations{one, two, alone} {
		assert.Check(t, !rv.Revoked(s.ID, now))
	}
	assert.NilError(t, one.Revoke(s, now))
	assert.NilError(t, alone.Revoke(s, now))
	for _, rv := range []*Revocations{one, two, alone} {
		assert.Check(t, rv.Revoked(s.ID, now))
		assert.Check(t, !rv.Revoked(other.ID, now))
		assert.Check(t, !rv.Revoked(s.ID, s.Expires), "a revocation outlives its session")
	}
	// Expired revocations are pruned from the directory.
	assert.NilError(t, one.Revoke(other, s.Expires.Add(2*pruneEvery)))
	ents, err := os.ReadDir(dir)
	assert.NilError(t, err)
	assert.Check(t, is.Len(ents, 1))

	assert.NilError(t, os.Chmod(dir, 0o777))
	_, err = NewRevocations(dir)
	assert.Check(t, is.ErrorContains(err, "writable by it alone"))
}
