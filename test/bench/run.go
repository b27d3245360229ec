package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Run is one run of one pipeline.
type Run struct {
	Seconds float64 `json:"seconds"`
	// Report is the last line the pipeline printed, when it is a JSON
	// object: output sizes, or a baicommit task with its own timings.
	Report  map[string]any `json:"report,omitempty"`
	Sampled Sampled        `json:"sampled"`
}

// PipelineResult is every run of one pipeline.
type PipelineResult struct {
	ID            string  `json:"id"`
	Title         string  `json:"title"`
	Runs          []Run   `json:"runs"`
	MedianSeconds float64 `json:"median_seconds"`
}

// Results is what a plan measured.
type Results struct {
	Title     string             `json:"title"`
	Date      time.Time          `json:"date"`
	Host      string             `json:"host"`
	Cores     int                `json:"cores"`
	Load      [2]string          `json:"load_average_before_after"`
	Info      map[string]any     `json:"info,omitempty"`
	Pipelines []*PipelineResult  `json:"pipelines"`
	Ratios    map[string]float64 `json:"ratios"`
	Goals     []GoalResult       `json:"goals"`
}

// GoalResult says whether a goal was met.
type GoalResult struct {
	Goal
	Value float64 `json:"value"`
	Met   bool    `json:"met"`
	Known bool    `json:"known"`
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func run(plan *Plan, w io.Writer) (*Results, error) {
	host, _ := os.Hostname()
	res := &Results{Title: plan.Title, Date: time.Now().UTC().Truncate(time.Second), Host: host,
		Cores: numCPU(), Info: plan.Info, Ratios: map[string]float64{}}
	res.Load[0] = loadavg()
	for _, p := range plan.Pipelines {
		res.Pipelines = append(res.Pipelines, &PipelineResult{ID: p.ID, Title: p.Title})
	}
	for rep := 1; rep <= plan.Reps; rep++ {
		fmt.Fprintf(w, "\n==> run %d/%d (load average %s)\n", rep, plan.Reps, loadavg())
		for i, p := range plan.Pipelines {
			r, err := runOnce(plan, p)
			if err != nil {
				return nil, fmt.Errorf("pipeline %s (%s): %w", p.ID, p.Title, err)
			}
			res.Pipelines[i].Runs = append(res.Pipelines[i].Runs, r)
			fmt.Fprintf(w, "    %-3s %8.2f s  %s\n", p.ID, r.Seconds, p.Title)
			if len(p.After) > 0 {
				if out, err := exec.Command(p.After[0], p.After[1:]...).CombinedOutput(); err != nil {
					return nil, fmt.Errorf("after pipeline %s: %v: %s", p.ID, err, out)
				}
			}
		}
	}
	res.Load[1] = loadavg()
	summarize(plan, res)
	return res, nil
}

func runOnce(plan *Plan, p Pipeline) (Run, error) {
	// What earlier runs left in the page cache's dirty pages is not this
	// run's to write.
	_ = exec.Command("sync").Run()
	cmd := exec.Command(p.Argv[0], p.Argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	s := startSampler(plan)
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	sampled := s.finish()
	if err != nil {
		return Run{}, fmt.Errorf("%v\nstdout: %s\nstderr: %s", err, tail(stdout.String()), tail(stderr.String()))
	}
	r := Run{Seconds: d.Seconds(), Sampled: sampled}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var rep map[string]any
	if last := lines[len(lines)-1]; strings.HasPrefix(last, "{") && json.Unmarshal([]byte(last), &rep) == nil {
		r.Report = rep
	} else if json.Unmarshal(stdout.Bytes(), &rep) == nil {
		r.Report = rep // an indented JSON document, like `commit --json`
	}
	return r, nil
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}
