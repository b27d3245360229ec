package sim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/baicommit/baicommit/internal/munge"
)

// Request is one request a client sends to the manager, with a fresh MUNGE
// credential as the CLI makes one.
type Request struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Body   []byte `json:"body,omitempty"`
}

// ClientSpec is what one client process (running as one user) does:
// Workers goroutines each send the Requests in turn, Repeat times over,
// each starting at its own offset.
type ClientSpec struct {
	Manager     string    `json:"manager"`
	MungeSocket string    `json:"munge_socket"`
	Workers     int       `json:"workers"`
	Repeat      int       `json:"repeat"`
	Requests    []Request `json:"requests"`
	// Keep returns each answer's body (for correctness checks).
	Keep bool `json:"keep,omitempty"`
}

// Answer is what one request got.
type Answer struct {
	Request  int      `json:"request"` // index in ClientSpec.Requests
	Status   int      `json:"status"`
	Ms       float64  `json:"ms"`
	Warnings []string `json:"warnings,omitempty"`
	Body     []byte   `json:"body,omitempty"`
	Err      string   `json:"err,omitempty"`
}

// ClientResult is a client process's answers, in no particular order.
type ClientResult struct {
	UID     int      `json:"uid"`
	Answers []Answer `json:"answers"`
}

// RunClient sends spec's requests. Only the request itself is timed: the
// credential is made before, as the CLI makes it before it connects.
func RunClient(ctx context.Context, spec ClientSpec, uid int) *ClientResult {
	codec := munge.Codec{Socket: spec.MungeSocket}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: spec.Workers}, Timeout: time.Minute}
	res := &ClientResult{UID: uid}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range spec.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range spec.Repeat * len(spec.Requests) {
				k := (w + i) % len(spec.Requests)
				a := send(ctx, hc, codec, spec, k)
				mu.Lock()
				res.Answers = append(res.Answers, a)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return res
}

func send(ctx context.Context, hc *http.Client, codec munge.Codec, spec ClientSpec, k int) Answer {
	rq := spec.Requests[k]
	a := Answer{Request: k}
	req, err := http.NewRequestWithContext(ctx, rq.Method, spec.Manager+rq.Path, bytes.NewReader(rq.Body))
	if err != nil {
		a.Err = err.Error()
		return a
	}
	if rq.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := codec.Sign(ctx, req, rq.Body, munge.AudienceManager, munge.EncodeOptions{TTL: time.Minute}); err != nil {
		a.Err = fmt.Sprintf("cannot make a credential: %v", err)
		return a
	}
	t0 := time.Now()
	resp, err := hc.Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		a.Status, a.Warnings = resp.StatusCode, resp.Header.Values("Warning")
		if spec.Keep || resp.StatusCode >= 300 {
			a.Body = b
		}
	}
	a.Ms = float64(time.Since(t0).Microseconds()) / 1000
	if err != nil {
		a.Err = err.Error()
	}
	return a
}
