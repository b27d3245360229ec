package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/munge"
)

// restart stops the replica (SIGTERM: it finishes what it serves) and
// starts it again on the same address, as a replica behind a load
// balancer is restarted.
func (m *managerProc) restart(t *testing.T) {
	t.Helper()
	assert.NilError(t, m.cmd.Process.Signal(syscall.SIGTERM))
	<-m.done
	old := m.cmd
	m.cmd = exec.Command(old.Path, old.Args[1:]...)
	m.cmd.SysProcAttr, m.cmd.Env, m.cmd.Stdout, m.cmd.Stderr = old.SysProcAttr, old.Env, old.Stdout, old.Stderr
	m.done = make(chan struct{})
	assert.NilError(t, m.cmd.Start())
	go func() { m.cmd.Wait(); close(m.done) }()
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		resp, err := http.Get(m.url + "/healthz")
		if err != nil {
			return poll.Continue("replica not up again: %v", err)
		}
		resp.Body.Close()
		return poll.Success()
	}, poll.WithTimeout(20*time.Second), poll.WithDelay(20*time.Millisecond))
}

// 50 clients ask two replicas for a task's status while the task's agent
// restarts, then while one replica restarts. The sessions the agent lost
// are opened again without a failed request; what fails is only what
// found a process away (the agent: 502 naming its node; the replica: no
// connection), and each of those succeeds when sent again.
func TestRestartsUnderLoad(t *testing.T) {
	c := newCluster(t, []string{"bcn1", "bcn2"}, 2, nil)
	ctr := session(t, alice, "")
	r := c.managers[0].cli(t, alice, "commit", "--node", "bcn1", "--wait", "--json", ctr)
	assert.Equal(t, r.code, 0, "%s", r)
	id := decodeTask(t, r).ID

	var (
		stop      atomic.Bool
		sent, ok  atomic.Int64
		mu        sync.Mutex
		transient = map[string]int{}
		wrong     []string
		wg        sync.WaitGroup
	)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 50}, Timeout: 30 * time.Second}
	codec := munge.Codec{}
	// ask sends one status request to a replica: "" if it succeeded, else
	// what failed, and whether a retry may fix it.
	ask := func(m *managerProc) (string, bool) {
		req, _ := http.NewRequest(http.MethodGet, m.url+api.RouteTask+id, nil)
		if err := codec.Sign(context.Background(), req, nil, munge.AudienceManager, munge.EncodeOptions{}); err != nil {
			return err.Error(), false
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "no connection to the replica", true
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(id)):
			return "", false
		case resp.StatusCode == http.StatusBadGateway && bytes.Contains(b, []byte("node bcn1")):
			return "502 from the agent's absence", true
		}
		return fmt.Sprintf("%d %s", resp.StatusCode, b), false
	}
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				m := c.managers[(i+n)%2]
				sent.Add(1)
				failure, retry := ask(m)
				for try := 0; failure != "" && retry && try < 100; try++ {
					mu.Lock()
					transient[failure]++
					mu.Unlock()
					time.Sleep(50 * time.Millisecond)
					failure, retry = ask(m)
				}
				if failure != "" {
					mu.Lock()
					wrong = append(wrong, failure)
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(time.Second)
	a := c.agents["bcn1"]
	a.stop()
	a.start()
	time.Sleep(time.Second)
	c.managers[0].restart(t)
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()

	t.Logf("%d requests, %d succeeded; failures that a retry fixed: %v", sent.Load(), ok.Load(), transient)
	assert.Check(t, is.Len(wrong, 0), "failures a retry did not fix, or should not happen at all: %v", wrong[:min(len(wrong), 5)])
	assert.Check(t, is.Equal(ok.Load(), sent.Load()))
	// Both replicas opened a session with the restarted agent again.
	assert.Check(t, strings.Count(a.log.String(), "manager session opened") >= 4, "agent log:\n%s", a.log)
}
