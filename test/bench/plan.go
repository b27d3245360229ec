package main

import (
	"errors"
	"fmt"
	"slices"
)

// Plan is one benchmark: what to run, what to watch, what to compare.
type Plan struct {
	Title string `json:"title"`
	// Reps is how many times each pipeline runs; the tables show medians.
	Reps int `json:"reps"`
	// Pipelines run in this order in every repetition, so a change in the
	// machine's load touches them alike.
	Pipelines []Pipeline `json:"pipelines"`
	// Processes are sampled while each pipeline runs.
	Processes []ProcGroup `json:"processes,omitempty"`
	// Disks are filesystems whose growth during each pipeline is recorded.
	Disks []Disk `json:"disks,omitempty"`
	// SampleMillis is the sampling period (default 100).
	SampleMillis int     `json:"sample_millis,omitempty"`
	Ratios       []Ratio `json:"ratios,omitempty"`
	Goals        []Goal  `json:"goals,omitempty"`
	// Info is carried into the results as it is (data size, versions).
	Info map[string]any `json:"info,omitempty"`
}

// Pipeline is one way of doing the job, timed from start to exit.
type Pipeline struct {
	ID    string   `json:"id"`
	Title string   `json:"title"`
	Argv  []string `json:"argv"`
	// After runs, untimed, after each run (removes what the run made).
	After []string `json:"after,omitempty"`
	// Written, when set, is where in the pipeline's report (dotted keys
	// of its JSON, e.g. "store.written") the bytes it wrote are.
	Written string `json:"written,omitempty"`
}

// ProcGroup is a set of processes whose memory is summed: Root and its
// descendants, those whose command line contains Match when it is set.
type ProcGroup struct {
	Name  string `json:"name"`
	Root  int    `json:"root"`
	Match string `json:"match,omitempty"`
	// UID, when set, keeps only processes of that user (any process on
	// the machine, not only Root's descendants, when Root is 0).
	UID *int `json:"uid,omitempty"`
}

// Disk is a filesystem, named by a path on it.
type Disk struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// Ratio is the median time of pipeline Num over that of Den.
type Ratio struct {
	Name string `json:"name"`
	Num  string `json:"num"`
	Den  string `json:"den"`
}

// Goal compares a ratio or a measurement with a limit.
type Goal struct {
	Name string `json:"name"`
	// Of names a ratio, or "memory:GROUP" (peak MiB of a process group or
	// of "+"-joined groups, e.g. "memory:agent+helpers"), or "disk:NAME"
	// (peak growth in MiB) while pipeline Pipeline ran, or "written" (the
	// median MiB pipeline Pipeline wrote, from its report).
	Of       string  `json:"of"`
	Pipeline string  `json:"pipeline,omitempty"`
	Op       string  `json:"op"` // "<=", "<", ">=", ">"
	Limit    float64 `json:"limit"`
}

func (p *Plan) validate() error {
	if p.Reps < 1 {
		return errors.New("reps must be at least 1")
	}
	if len(p.Pipelines) == 0 {
		return errors.New("no pipelines")
	}
	ids := map[string]bool{}
	for _, pl := range p.Pipelines {
		if pl.ID == "" || len(pl.Argv) == 0 || ids[pl.ID] {
			return fmt.Errorf("pipeline %q: needs a unique id and a command", pl.ID)
		}
		ids[pl.ID] = true
	}
	for _, r := range p.Ratios {
		if !ids[r.Num] || !ids[r.Den] {
			return fmt.Errorf("ratio %q: unknown pipeline", r.Name)
		}
	}
	for _, g := range p.Goals {
		if !slices.Contains([]string{"<=", "<", ">=", ">"}, g.Op) {
			return fmt.Errorf("goal %q: op %q", g.Name, g.Op)
		}
	}
	if p.SampleMillis <= 0 {
		p.SampleMillis = 100
	}
	return nil
}
