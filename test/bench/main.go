// Command bench runs the pipelines of a benchmark plan one after the other,
// repetition by repetition, samples the memory of chosen processes and the
// disk use of chosen filesystems while each runs, and reports medians,
// ratios and whether the goals are met, on the terminal, as a Markdown
// table and as JSON. It never fails because of a number: a benchmark
// reports, a test asserts.
//
// scripts/bench.sh sets the machine up, starts what the pipelines need and
// writes the plan (see Plan); the pipelines themselves stay shell, where
// they are clearest (scripts/bench/*.sh).
//
//	go run ./test/bench -plan plan.json -out results.json
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
)

func main() {
	planPath := flag.String("plan", "", "the benchmark plan (JSON)")
	out := flag.String("out", "", "write the results here as JSON")
	flag.Parse()
	if *planPath == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: bench -plan PLAN.json [-out RESULTS.json]")
		os.Exit(2)
	}
	plan, err := readPlan(*planPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	res, err := run(plan, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	report(os.Stdout, plan, res)
	if *out != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err == nil {
			err = os.WriteFile(*out, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		fmt.Printf("\nresults written to %s\n", *out)
	}
}

func readPlan(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, err)
	}
	return &p, p.validate()
}
