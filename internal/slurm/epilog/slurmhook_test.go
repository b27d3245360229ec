package epilog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
)

// epilogEnv is what slurmd 22.05 gave the epilog of a job that exited 3.
var epilogEnv = map[string]string{
	"SLURM_JOB_ID": "3", "SLURM_JOB_UID": "1002", "SLURM_JOB_USER": "bcalice", "SLURMD_NODENAME": "vm",
	"SLURM_SCRIPT_CONTEXT": "epilog_slurmd", "SLURM_JOB_EXIT_CODE": "768", "SLURM_JOB_EXIT_CODE2": "3:0",
}

func getenv(base map[string]string, change map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := change[k]; ok {
			return v
		}
		return base[k]
	}
}

func TestReadEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  map[string]string
		want    Env
		wantErr string
	}{
		{name: "epilog", want: Env{Job: "3", User: "1002", Node: "vm", Exit: "3:0", Context: EpilogContext}},
		{name: "no uid: the name", change: map[string]string{"SLURM_JOB_UID": ""},
			want: Env{Job: "3", User: "bcalice", Node: "vm", Exit: "3:0", Context: EpilogContext}},
		{name: "exit from the wait status", change: map[string]string{"SLURM_JOB_EXIT_CODE2": "", "SLURM_JOB_EXIT_CODE": "9"},
			want: Env{Job: "3", User: "1002", Node: "vm", Exit: "0:9", Context: EpilogContext}},
		{name: "no exit at all", change: map[string]string{"SLURM_JOB_EXIT_CODE2": "", "SLURM_JOB_EXIT_CODE": ""},
			want: Env{Job: "3", User: "1002", Node: "vm", Context: EpilogContext}},
		{name: "array job", change: map[string]string{"SLURM_JOB_ID": "17_4"},
			want: Env{Job: "17_4", User: "1002", Node: "vm", Exit: "3:0", Context: EpilogContext}},
		{name: "prolog", change: map[string]string{"SLURM_SCRIPT_CONTEXT": "prolog_slurmd"}, wantErr: "not as prolog_slurmd"},
		{name: "no job", change: map[string]string{"SLURM_JOB_ID": ""}, wantErr: "SLURM_JOB_ID is not set"},
		{name: "hostile job", change: map[string]string{"SLURM_JOB_ID": "../../etc"}, wantErr: "not a job id"},
		{name: "no user", change: map[string]string{"SLURM_JOB_UID": "", "SLURM_JOB_USER": ""}, wantErr: "names the job's user"},
		{name: "hostile user", change: map[string]string{"SLURM_JOB_UID": "x", "SLURM_JOB_USER": "a b"}, wantErr: "names the job's user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadEnv(getenv(epilogEnv, tc.change))
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			assert.NilError(t, err)
			assert.DeepEqual(t, got, tc.want)
		})
	}
}

// fakeAgent answers FreezeJob with res (or err) and each Wait from final;
// a task missing from final waits until the context ends.
type fakeAgent struct {
	res   *api.JobFreezes
	err   error
	final map[string]*api.Task
	asked api.JobFreezeRequest
}

func (f *fakeAgent) FreezeJob(_ context.Context, _ string, req api.JobFreezeRequest) (*api.JobFreezes, error) {
	f.asked = req
	return f.res, f.err
}

func (f *fakeAgent) Wait(ctx context.Context, id string, _ time.Duration, _ func(*api.Task)) (*api.Task, error) {
	if t, ok := f.final[id]; ok {
		return t, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestRun(t *testing.T) {
	env := Env{Job: "3", User: "1002", Node: "vm", Exit: "3:0"}
	ok := &api.Task{ID: "a.n", State: api.StateSucceeded, Archive: &api.Archive{Path: "/s/a.tar.gz"}}
	bad := &api.Task{ID: "b.n", State: api.StateFailed, Error: "the save location is not writable"}
	for _, tc := range []struct {
		name    string
		agent   *fakeAgent
		want    Outcome
		wantLog []string
	}{
		{name: "frozen and failed",
			agent: &fakeAgent{res: &api.JobFreezes{Tasks: []api.Task{{ID: "a.n"}, {ID: "b.n"}}},
				final: map[string]*api.Task{"a.n": ok, "b.n": bad}},
			want:    Outcome{Succeeded: 1, Failed: 1},
			wantLog: []string{"session frozen", "/s/a.tar.gz", "freeze failed", "not writable"}},
		{name: "budget runs out",
			agent:   &fakeAgent{res: &api.JobFreezes{Tasks: []api.Task{{ID: "slow.n"}}}},
			want:    Outcome{Running: 1},
			wantLog: []string{"goes on in the agent", "baicommit status slow.n"}},
		{name: "nothing to freeze",
			agent:   &fakeAgent{res: &api.JobFreezes{Policy: "labelled", Skipped: []api.JobSkip{{Container: "c", Reason: "not opted in"}}}},
			want:    Outcome{Skipped: 1},
			wantLog: []string{"not opted in", "no session of this job"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			start := time.Now()
			got := Run(context.Background(), tc.agent, env, 300*time.Millisecond, time.Millisecond, log)
			assert.Check(t, time.Since(start) < 2*time.Second, "Run overran its budget")
			assert.DeepEqual(t, got, tc.want)
			assert.DeepEqual(t, tc.agent.asked, api.JobFreezeRequest{User: "1002", Exit: "3:0"})
			for _, w := range tc.wantLog {
				assert.Check(t, is.Contains(buf.String(), w))
			}
		})
	}
	t.Run("agent unreachable", func(t *testing.T) {
		var buf bytes.Buffer
		got := Run(context.Background(), &fakeAgent{err: errors.New("connection refused")}, env, time.Second, time.Millisecond,
			slog.New(slog.NewTextHandler(&buf, nil)))
		assert.ErrorContains(t, got.Err, "connection refused")
		assert.Check(t, is.Contains(buf.String(), "nothing was frozen"))
	})
}

func TestSyslogHandler(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	assert.NilError(t, err)
	defer conn.Close()
	h, err := DialSyslog(path)
	assert.NilError(t, err)
	defer h.Close()
	log := slog.New(h).With("job", "3")
	log.Warn("freeze failed", "err", "no space left")
	log.Debug("not sent")
	log.Info("frozen", "size", 12)

	read := func() string {
		buf := make([]byte, 4096)
		assert.NilError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err := conn.Read(buf)
		assert.NilError(t, err)
		return string(buf[:n])
	}
	// <28> is daemon.warning, <30> daemon.info.
	first := read()
	assert.Check(t, strings.HasPrefix(first, "<28>"), first)
	assert.Check(t, is.Contains(first, Tag))
	assert.Check(t, is.Contains(first, `freeze failed job=3 err="no space left"`))
	second := read()
	assert.Check(t, strings.HasPrefix(second, "<30>"), second)
	assert.Check(t, is.Contains(second, "frozen job=3 size=12"))
}
