package e2e

// The attacker: this test binary run again as a test user (bob, carol) to
// do what a hostile user on a compute node can do, with their own
// permissions and nothing more: serve a Podman API of their own making at
// their socket path, or hold connections to the agent open.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	"gotest.tools/v3/poll"
)

// Environment of an attacker run.
const (
	attackEnv = "BAICOMMIT_E2E_ATTACK" // "podman" or "hold"
	socketEnv = "BAICOMMIT_E2E_SOCKET"
	specEnv   = "BAICOMMIT_E2E_SPEC"
)

// fakeSpec is what a fake Podman serves.
type fakeSpec struct {
	Containers []fakeContainer `json:"containers"`
	// Commit is "hang" (never answer) or "fail:MESSAGE", and so is every
	// step of a freeze that does not commit (info, pause).
	Commit string `json:"commit"`
	// EndlessList makes the list of containers an answer that never ends.
	EndlessList bool `json:"endless_list"`
	// ExecPID is the pid an exec session claims to run as; the session
	// runs forever and its stream never ends.
	ExecPID int `json:"exec_pid"`
}

type fakeContainer struct {
	ID, Name, Image string
	Labels          map[string]string
}

// holdSpec is what a hold attack does: Idle connections that made one
// request and stay open, Silent ones that send a request's headers
// promising a body that never comes.
type holdSpec struct {
	Idle, Silent int
}

// runAttacker runs an attack if this process was started as an attacker,
// and then never returns.
func runAttacker() {
	mode := os.Getenv(attackEnv)
	if mode == "" {
		return
	}
	var err error
	switch mode {
	case "podman":
		err = serveFakePodman(os.Getenv(socketEnv), os.Getenv(specEnv))
	case "hold":
		err = holdConnections(os.Getenv(socketEnv), os.Getenv(specEnv))
	default:
		err = fmt.Errorf("unknown attack %q", mode)
	}
	fmt.Fprintln(os.Stderr, "attacker:", err)
	os.Exit(1)
}

// serveFakePodman answers the libpod API at sock as spec says.
func serveFakePodman(sock, specJSON string) error {
	var spec fakeSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return err
	}
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	find := func(nameOrID string) *fakeContainer {
		for i, c := range spec.Containers {
			if c.Name == nameOrID || strings.HasPrefix(c.ID, nameOrID) {
				return &spec.Containers[i]
			}
		}
		return nil
	}
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Libpod-API-Version", "4.3.1")
		p := r.URL.Path
		switch {
		case strings.HasSuffix(p, "/_ping"):
			_, _ = io.WriteString(w, "OK")
		case strings.HasSuffix(p, "/containers/json") && spec.EndlessList:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "[")
			entry := `{"Id":"` + strings.Repeat("f", 64) + `","Names":["` + strings.Repeat("n", 200) + `"],"Image":"x","State":"running","Labels":{"k":"` + strings.Repeat("v", 700) + `"}},`
			for r.Context().Err() == nil {
				if _, err := io.WriteString(w, entry); err != nil {
					return
				}
			}
		case strings.HasSuffix(p, "/containers/json"):
			var out []map[string]any
			for _, c := range spec.Containers {
				out = append(out, map[string]any{"Id": c.ID, "Names": []string{c.Name}, "Image": c.Image, "State": "running",
					"Created": time.Now().UTC(), "Labels": c.Labels})
			}
			reply(w, 200, out)
		case strings.HasSuffix(p, "/json") && strings.Contains(p, "/containers/"):
			name := filepath.Base(filepath.Dir(p))
			c := find(name)
			if c == nil {
				reply(w, 404, map[string]any{"cause": "no such container", "message": "no container " + name, "response": 404})
				return
			}
			reply(w, 200, map[string]any{"Id": c.ID, "Name": c.Name, "ImageName": c.Image,
				"State": map[string]any{"Status": "running", "Running": true}, "Config": map[string]any{"Labels": c.Labels}})
		case strings.HasSuffix(p, "/exec") && strings.Contains(p, "/containers/"):
			reply(w, 201, map[string]any{"Id": "e2eexec"})
		case strings.HasSuffix(p, "/exec/e2eexec/start"):
			// The attach: upgraded, then a stream that never ends.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			_, _ = io.WriteString(conn, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
			_, _ = io.Copy(io.Discard, conn) // until the agent hangs up
			conn.Close()
		case strings.HasSuffix(p, "/exec/e2eexec/json"):
			reply(w, 200, map[string]any{"ID": "e2eexec", "Running": true, "Pid": spec.ExecPID, "ExitCode": 0})
		case strings.HasSuffix(p, "/commit") || strings.HasSuffix(p, "/info") || strings.HasSuffix(p, "/pause"):
			if msg, ok := strings.CutPrefix(spec.Commit, "fail:"); ok {
				reply(w, 500, map[string]any{"cause": msg, "message": msg, "response": 500})
				return
			}
			if spec.Commit == "hang" {
				<-r.Context().Done() // never answers
				return
			}
			reply(w, 200, map[string]any{"store": map[string]any{"graphRoot": "/nonexistent", "runRoot": "/nonexistent", "graphDriverName": "vfs"}})
		default:
			reply(w, 404, map[string]any{"cause": "not faked", "message": "not faked: " + p, "response": 404})
		}
	})
	fmt.Println("ready")
	return http.Serve(ln, h)
}

// holdConnections opens the connections spec asks for to the agent's
// socket and reports, one JSON line each, when the agent closes one.
func holdConnections(sock, specJSON string) error {
	var spec holdSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return err
	}
	type closed struct {
		Kind    string  `json:"kind"`
		Served  bool    `json:"served"`
		Seconds float64 `json:"seconds"`
	}
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	report := func(c closed) { mu.Lock(); _ = enc.Encode(c); mu.Unlock() }
	var wg sync.WaitGroup
	start := time.Now()
	open := func(kind string, request string) {
		defer wg.Done()
		conn, err := net.Dial("unix", sock)
		if err != nil {
			report(closed{Kind: kind, Seconds: time.Since(start).Seconds()})
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, request)
		br := bufio.NewReader(conn)
		served := false
		if kind == "idle" {
			// One whole request and its answer; then the connection idles.
			if resp, err := http.ReadResponse(br, nil); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				served = true
			}
		}
		// Whatever comes next, until the agent closes the connection.
		_, _ = io.Copy(io.Discard, br)
		report(closed{Kind: kind, Served: served, Seconds: time.Since(start).Seconds()})
	}
	for range spec.Idle {
		wg.Add(1)
		go open("idle", "GET /v1/version HTTP/1.1\r\nHost: agent\r\n\r\n")
	}
	for range spec.Silent {
		wg.Add(1)
		go open("silent", "POST /v1/freezes HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
	}
	time.Sleep(200 * time.Millisecond)
	fmt.Fprintln(os.Stderr, "holding")
	wg.Wait()
	return fmt.Errorf("every connection was closed")
}

// attackerBin is this test binary, where the test users may run it.
var attackerBin string

// installAttacker copies the test binary into dir for the test users.
func installAttacker(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	attackerBin = filepath.Join(dir, "e2e-attacker")
	out, err := exec.Command("install", "-m", "0755", self, attackerBin).CombinedOutput()
	if err != nil {
		return fmt.Errorf("install the attacker: %v: %s", err, out)
	}
	return nil
}

// attacker is one attack running as a test user.
type attacker struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
}

// startAttack runs the attack mode as who, with sock and spec, until the
// test ends.
func startAttack(t *testing.T, who, mode, sock string, spec any) *attacker {
	t.Helper()
	b, err := json.Marshal(spec)
	assert.NilError(t, err)
	env := []string{"HOME=/home/" + who, "USER=" + who, "PATH=/usr/bin:/bin",
		attackEnv + "=" + mode, socketEnv + "=" + sock, specEnv + "=" + string(b)}
	at := &attacker{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	at.cmd = exec.Command("runuser", append([]string{"-u", who, "--", "/usr/bin/env", "-i"}, append(env, attackerBin)...)...)
	at.cmd.Dir = "/"
	at.cmd.Stdout, at.cmd.Stderr = at.stdout, at.stderr
	assert.NilError(t, at.cmd.Start())
	done := make(chan struct{})
	go func() { at.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// runuser passes the signal on to the attacker.
		at.cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			exec.Command("pkill", "-KILL", "-u", who, "-f", attackerBin).Run()
			<-done
		}
	})
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if strings.Contains(at.stdout.String(), "ready") || strings.Contains(at.stderr.String(), "holding") {
			return poll.Success()
		}
		select {
		case <-done:
			return poll.Error(fmt.Errorf("the attacker exited: %s %s", at.stdout, at.stderr))
		default:
		}
		return poll.Continue("attacker not ready")
	}, poll.WithTimeout(20*time.Second))
	return at
}

// fakePodmanOf serves a fake Podman API as who at their standard socket
// (their /run/user/UID, as systemd-logind makes it, exists for the test).
func fakePodmanOf(t *testing.T, who string, spec fakeSpec) *attacker {
	t.Helper()
	uid := int(uidOf(t, who))
	dir := "/run/user/" + strconv.Itoa(uid)
	_, statErr := os.Stat(dir)
	if os.IsNotExist(statErr) {
		// 0755, not 0700: the user's own podman would take a 0700 one as
		// its runtime directory.
		assert.NilError(t, os.Mkdir(dir, 0o755))
		assert.NilError(t, os.Chown(dir, uid, uid))
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	r := runAs(t, who, "mkdir", "-p", dir+"/podman")
	assert.Equal(t, r.code, 0, "%s", r)
	return startAttack(t, who, "podman", dir+"/podman/podman.sock", spec)
}

// helperPIDs are the owner-side helpers running for who (op, e.g.
// "archive-image"; "" for any).
func helperPIDs(t *testing.T, who, op string) []int {
	t.Helper()
	uid := uidOf(t, who)
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(argv) < 3 || argv[1] != "as-owner" || (op != "" && argv[2] != op) || filepath.Base(argv[0]) != "baicommit-agent" {
			continue
		}
		st, err := os.Stat(filepath.Dir(p))
		if err != nil || !ownedBy(st, uid) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		pids = append(pids, pid)
	}
	return pids
}

// stopHelpers has who stop (SIGSTOP) every helper of theirs that appears,
// until ctx ends; it returns how many it stopped when it is done.
func stopHelpers(ctx context.Context, t *testing.T, who string) <-chan int {
	out := make(chan int, 1)
	go func() {
		stopped := map[int]bool{}
		for ctx.Err() == nil {
			for _, pid := range helperPIDs(t, who, "") {
				if !stopped[pid] {
					if r := runAs(t, who, "kill", "-STOP", strconv.Itoa(pid)); r.code == 0 {
						stopped[pid] = true
					}
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		out <- len(stopped)
	}()
	return out
}
