package identity

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/internal/httperr"
	"github.com/baicommit/baicommit/internal/munge"
	"github.com/baicommit/baicommit/internal/reqauth"
)

func TestAdmin(t *testing.T) {
	a := Admins{Users: []string{"root2", "carol"}, Groups: []string{"hpcadmin"}}
	for _, tc := range []struct {
		user   string
		groups []string
		want   bool
	}{
		{"carol", nil, true},
		{"root2", []string{"users"}, true},
		{"alice", []string{"users", "hpcadmin"}, true},
		{"alice", []string{"users"}, false},
		{"alice", nil, false},
		{"Carol", nil, false},               // names are exact
		{"hpcadmin", []string{"x"}, false},  // a group name is not a user name
		{"alice", []string{"carol"}, false}, // a user name is not a group name
		{"", nil, false},
	} {
		u := &User{UID: 1000, Name: tc.user, GroupNames: tc.groups}
		assert.Check(t, is.Equal(a.Admin(u), tc.want), "%q %v", tc.user, tc.groups)
	}
	var none Admins
	assert.Check(t, !none.Admin(&User{UID: 1000, Name: "root", GroupNames: []string{"root", "wheel"}}), "names are not magic")
	assert.Check(t, none.Admin(&User{UID: 0, Name: "toor"}), "uid 0 is")
	assert.Check(t, !none.Admin(nil))
}

func TestMayActFor(t *testing.T) {
	alice := Caller{UID: 1000, User: &User{UID: 1000, Name: "alice"}}
	admin := Caller{UID: 1002, User: &User{UID: 1002, Name: "carol"}, Admin: true}
	noAccount := Caller{UID: 4242}
	for _, tc := range []struct {
		c     Caller
		owner string
		want  bool
	}{
		{alice, "", true},
		{alice, "alice", true},
		{alice, "1000", true},
		{alice, "bob", false},
		{alice, "1001", false},
		{admin, "bob", true},
		{noAccount, "4242", true},
		{noAccount, "alice", false},
	} {
		assert.Check(t, is.Equal(tc.c.MayActFor(tc.owner), tc.want), "%s for %q", tc.c.Name(), tc.owner)
	}
}

type table map[int]*User

func (t table) Lookup(s string) (*User, error) {
	uid, _ := strconv.Atoi(s)
	if u, ok := t[uid]; ok {
		return u, nil
	}
	return nil, ErrUnknownUser
}

func TestNewCaller(t *testing.T) {
	accounts := table{0: {UID: 0, Name: "root"}, 1000: {UID: 1000, Name: "alice"}, 1002: {UID: 1002, Name: "carol", GroupNames: []string{"hpcadmin"}}}
	admins := Admins{Groups: []string{"hpcadmin"}}
	assert.Check(t, NewCaller(accounts, admins, 0).Admin)
	assert.Check(t, NewCaller(accounts, admins, 1002).Admin)
	c := NewCaller(accounts, admins, 1000)
	assert.Check(t, !c.Admin)
	assert.Check(t, is.Equal(c.Name(), "alice"))
	c = NewCaller(accounts, admins, 4242)
	assert.Check(t, c.User == nil && !c.Admin)
	assert.Check(t, is.Equal(c.Name(), "4242"))
}

func TestLookupSelf(t *testing.T) {
	me, err := LookupUID(os.Getuid())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(me.UID, os.Getuid()))
	byName, err := LookupName(me.Name)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(byName.UID, me.UID))
	_, err = LookupName(strconv.Itoa(me.UID))
	assert.Check(t, errors.Is(err, ErrUnknownUser), "a uid is not a name")
	_, err = Lookup("no-such-user-baicommit")
	assert.Check(t, errors.Is(err, ErrUnknownUser))
}

func TestPeerCred(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	assert.NilError(t, err)
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", sock)
		if err == nil {
			defer c.Close()
			buf := make([]byte, 1)
			_, _ = c.Read(buf)
		}
	}()
	conn, err := ln.Accept()
	assert.NilError(t, err)
	defer conn.Close()
	cred, err := PeerCred(conn.(*net.UnixConn))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(int(cred.Uid), os.Getuid()))
	assert.Check(t, is.Equal(int(cred.Pid), os.Getpid()))
}

// FromMUNGE's errors carry the status a daemon answers with.
func TestFromMUNGEClassifies(t *testing.T) {
	dir := t.TempDir()
	unmunge := func(name, script string) string {
		p := filepath.Join(dir, name)
		assert.NilError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755))
		return p
	}
	for _, tc := range []struct {
		name   string
		auth   string
		codec  munge.Codec
		status int
		noCred bool
	}{
		{name: "no credential", codec: munge.Codec{Unmunge: "/bin/false"}, status: http.StatusUnauthorized, noCred: true},
		{name: "another scheme", auth: "Bearer x", codec: munge.Codec{Unmunge: "/bin/false"}, status: http.StatusUnauthorized, noCred: true},
		{name: "munged down", auth: "MUNGE MUNGE:abc:", codec: munge.Codec{Unmunge: unmunge("down", "echo 'unmunge: Error: Failed to access socket' >&2; exit 6")}, status: http.StatusServiceUnavailable},
		{name: "replayed", auth: "MUNGE MUNGE:abc:", codec: munge.Codec{Unmunge: unmunge("replayed", "echo 'unmunge: Error: Replayed credential' >&2; exit 17")}, status: http.StatusUnauthorized},
		{name: "not a credential", auth: "MUNGE hello", codec: munge.Codec{Unmunge: "/bin/false"}, status: http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/tasks", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			_, _, err := FromMUNGE(context.Background(), tc.codec, r, munge.AudienceManager, 1<<10)
			var he *httperr.Error
			assert.Assert(t, errors.As(err, &he), "%v", err)
			assert.Check(t, is.Equal(httperr.Status(err), tc.status), "%v", err)
			assert.Check(t, is.Equal(errors.Is(err, ErrNoCredential), tc.noCred), "%v", err)
		})
	}
}

// FromSession checks the signature before it reads a byte of the body,
// then the body against it.
func TestFromSession(t *testing.T) {
	srv := reqauth.NewServer("cn01", reqauth.ServerOptions{})
	c := reqauth.NewClient(func(_ context.Context, _ string, h []byte) ([]byte, error) { return srv.Accept(h) }, reqauth.ClientOptions{})
	s, err := c.Session(context.Background(), "cn01")
	assert.NilError(t, err)
	body := `{"container":"box"}`
	for _, tc := range []struct {
		name     string
		sign     bool
		sent     string
		max      int64
		uid      int
		status   int
		readBody bool
	}{
		{name: "signed", sign: true, sent: body, max: 1 << 10, uid: 1000, readBody: true},
		{name: "unsigned", sent: body, max: 1 << 10, status: http.StatusUnauthorized},
		{name: "another body", sign: true, sent: `{"container":"other"}`, max: 1 << 10, status: http.StatusUnauthorized, readBody: true},
		{name: "too large", sign: true, sent: body, max: 4, status: http.StatusBadRequest, readBody: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr := &countingReader{r: strings.NewReader(tc.sent)}
			r := httptest.NewRequest(http.MethodPost, "/v1/freezes", cr)
			if tc.sign {
				s.Sign(r, []byte(body), "1000")
			}
			uid, err := FromSession(srv, r, tc.max)
			if tc.status == 0 {
				assert.NilError(t, err)
				assert.Check(t, is.Equal(uid, tc.uid))
				b, _ := io.ReadAll(r.Body)
				assert.Check(t, is.Equal(string(b), body), "the body is put back")
			} else {
				assert.Check(t, is.Equal(httperr.Status(err), tc.status), "%v", err)
			}
			assert.Check(t, is.Equal(cr.n > 0, tc.readBody), "read %d bytes", cr.n)
		})
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// counted counts the lookups that reach it.
type counted struct {
	table
	n int
}

func (c *counted) Lookup(s string) (*User, error) {
	c.n++
	return c.table.Lookup(s)
}

func TestCache(t *testing.T) {
	next := &counted{table: table{1000: {UID: 1000, Name: "alice"}}}
	now := time.Unix(1_800_000_000, 0)
	c := NewCache(next, time.Minute, 3)
	c.now = func() time.Time { return now }
	for range 5 {
		u, err := c.Lookup("1000")
		assert.NilError(t, err)
		assert.Check(t, is.Equal(u.Name, "alice"))
		_, err = c.Lookup("4242")
		assert.Check(t, errors.Is(err, ErrUnknownUser))
	}
	assert.Check(t, is.Equal(next.n, 2), "asked again within the TTL")

	// A minute later, a change to the account shows.
	now = now.Add(time.Minute)
	next.table[1000] = &User{UID: 1000, Name: "alice2"}
	u, err := c.Lookup("1000")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(u.Name, "alice2"))
	assert.Check(t, is.Equal(next.n, 3))

	// Never more than max entries.
	for i := range 10 {
		_, _ = c.Lookup(strconv.Itoa(2000 + i))
	}
	assert.Check(t, len(c.m) <= 3, "%d entries", len(c.m))
}

// A failure of the account database itself is not remembered.
func TestCacheForgetsFailures(t *testing.T) {
	calls := 0
	c := NewCache(failing(func() { calls++ }), 0, 0)
	for range 3 {
		_, err := c.Lookup("1000")
		assert.ErrorContains(t, err, "sssd down")
	}
	assert.Check(t, is.Equal(calls, 3))
}

type failing func()

func (f failing) Lookup(string) (*User, error) {
	f()
	return nil, errors.New("sssd down")
}
