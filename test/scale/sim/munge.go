package sim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultMungeSocket is munged's socket.
const DefaultMungeSocket = "/run/munge/munge.socket.2"

// MungeCounter is a unix socket in front of munged that counts MUNGE
// operations: libmunge connects once for each encode or decode, so one
// connection is one operation. munged learns who encodes from the socket's
// peer credentials, so each connection is passed on from a thread that
// takes the caller's uid and gid for its connect (Linux keeps credentials
// per thread): the credential says who made it, not the counter. It must
// run as root.
type MungeCounter struct {
	path, target string
	ln           net.Listener
	n            atomic.Int64
	wg           sync.WaitGroup
}

// StartMungeCounter listens on path and passes connections to target.
func StartMungeCounter(path, target string) (*MungeCounter, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("counting MUNGE operations needs root (it connects to munged as each caller)")
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Anyone may connect, as to munged itself.
	if err := os.Chmod(path, 0o777); err != nil {
		ln.Close()
		return nil, err
	}
	m := &MungeCounter{path: path, target: target, ln: ln}
	m.wg.Add(1)
	go m.serve()
	return m, nil
}

// Path is the socket to point munge_socket at.
func (m *MungeCounter) Path() string { return m.path }

// Count is the number of operations so far.
func (m *MungeCounter) Count() int64 { return m.n.Load() }

// Close stops listening.
func (m *MungeCounter) Close() error {
	err := m.ln.Close()
	m.wg.Wait()
	return err
}

func (m *MungeCounter) serve() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.n.Add(1)
		go m.pass(c.(*net.UnixConn))
	}
}

func (m *MungeCounter) pass(c *net.UnixConn) {
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		return
	}
	up, err := dialAs(m.target, int(cred.Uid), int(cred.Gid))
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		_ = up.(*net.UnixConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	_ = c.CloseWrite()
	<-done
}

// dialAs connects to a unix socket with the effective uid and gid given,
// on a thread of its own, so the peer credentials the server sees are
// those. The thread gets root back before anything else runs on it; if it
// cannot, it is never used again (a locked thread ends with its goroutine).
func dialAs(path string, uid, gid int) (net.Conn, error) {
	runtime.LockOSThread()
	if err := setEffective(uid, gid); err != nil {
		if setEffective(0, 0) == nil {
			runtime.UnlockOSThread()
		}
		return nil, fmt.Errorf("take uid %d: %w", uid, err)
	}
	c, err := net.Dial("unix", path)
	if setEffective(0, 0) == nil {
		runtime.UnlockOSThread()
	}
	return c, err
}

// setEffective sets this thread's effective gid, then uid (raw system
// calls: Go's own apply to every thread). Going back to 0, the uid first.
func setEffective(uid, gid int) error {
	keep := ^uintptr(0)
	set := func(nr uintptr, id int) error {
		if _, _, e := syscall.RawSyscall(nr, keep, uintptr(id), keep); e != 0 {
			return e
		}
		return nil
	}
	if uid == 0 {
		if err := set(syscall.SYS_SETRESUID, 0); err != nil {
			return err
		}
		return set(syscall.SYS_SETRESGID, gid)
	}
	if err := set(syscall.SYS_SETRESGID, gid); err != nil {
		return err
	}
	return set(syscall.SYS_SETRESUID, uid)
}
