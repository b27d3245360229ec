// Command baicommit-sim runs the simulation of package sim (test code,
// never installed):
//
//	baicommit-sim nodes --plan FILE --from I --to J --control SOCK
//	    serve the plan's nodes [I, J) with the real agent code, until SIGTERM
//	baicommit-sim client < SPEC
//	    send a sim.ClientSpec's requests as the user this runs as; print the answers
//	baicommit-sim bench [--nodes 100,500,2000] [--json FILE]
//	    as root: simulate each cluster size, measure every route, print a table
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/baicommit/baicommit/test/scale/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: baicommit-sim nodes|client|bench …")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "nodes":
		err = nodes(ctx, os.Args[2:])
	case "client":
		err = client(ctx)
	case "bench":
		err = bench(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "baicommit-sim:", err)
		os.Exit(1)
	}
}

func nodes(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nodes", flag.ExitOnError)
	planFile := fs.String("plan", "", "the plan (JSON)")
	from := fs.Int("from", 0, "first node")
	to := fs.Int("to", 0, "after the last node")
	ctl := fs.String("control", "", "control socket")
	_ = fs.Parse(args)
	b, err := os.ReadFile(*planFile)
	if err != nil {
		return err
	}
	var p sim.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	// A file, a listener and a few connections per node.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the open file limit: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := sim.NewHost(&p, *from, *to, log)
	if err := h.Start(); err != nil {
		h.Close()
		return err
	}
	defer h.Close()
	return h.ServeControl(ctx, *ctl)
}

func client(ctx context.Context) error {
	var spec sim.ClientSpec
	if err := json.NewDecoder(io.LimitReader(os.Stdin, 64<<20)).Decode(&spec); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(sim.RunClient(ctx, spec, os.Getuid()))
}

func bench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	sizes := fs.String("nodes", "100,500,2000", "cluster sizes")
	workers := fs.Int("workers", 5, "client goroutines per user (10 users)")
	repeat := fs.Int("repeat", 20, "rounds of each user's requests per goroutine")
	out := fs.String("json", "", "also write the results to this file")
	keep := fs.Bool("keep", false, "keep the simulation's directory")
	_ = fs.Parse(args)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	users, err := sim.SystemUsers(sim.SimUsers...)
	if err != nil {
		return err
	}
	type run struct {
		Nodes   int           `json:"nodes"`
		Startup float64       `json:"startup_seconds"`
		Results []*sim.Result `json:"results"`
	}
	var runs []run
	began := time.Now()
	defer func() { fmt.Fprintf(os.Stderr, "bench-scale: %.0fs in all\n", time.Since(began).Seconds()) }()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("--nodes: %w", err)
		}
		fmt.Fprintf(os.Stderr, "simulating %d nodes…\n", n)
		t0 := time.Now()
		c, err := sim.Start(ctx, sim.Options{Shape: sim.Shape{Nodes: n, Users: users}, Bin: filepath.Dir(self),
			ManagerUser: "bcmanager", Keep: *keep})
		if err != nil {
			return err
		}
		r := run{Nodes: n, Startup: time.Since(t0).Seconds()}
		fmt.Fprintf(os.Stderr, "  %d nodes up in %.1fs (%d host processes)\n", n, r.Startup, (n+499)/500)
		err = func() error {
			defer c.Close()
			tasks, err := c.FreezeAll(ctx)
			if err != nil {
				return fmt.Errorf("%w\n%s", err, c.Logs())
			}
			for _, ph := range sim.Phases(c.Plan, tasks, *workers, *repeat) {
				res, err := c.Measure(ctx, ph)
				if err != nil {
					return fmt.Errorf("%s: %w\n%s", ph.Name, err, c.Logs())
				}
				fmt.Fprintf(os.Stderr, "  %-14s %5d requests in %5.1fs, %d failed\n", res.Name, res.Requests, res.Seconds, res.Failures)
				r.Results = append(r.Results, res)
			}
			return nil
		}()
		if err != nil {
			return err
		}
		runs = append(runs, r)
	}
	printTable(os.Stdout, runs[0].Results, func(i int) []*sim.Result {
		var col []*sim.Result
		for _, r := range runs {
			col = append(col, r.Results[i])
		}
		return col
	}, func() []int {
		var ns []int
		for _, r := range runs {
			ns = append(ns, r.Nodes)
		}
		return ns
	}())
	if *out != "" {
		b, _ := json.MarshalIndent(runs, "", "  ")
		return os.WriteFile(*out, b, 0o644)
	}
	return nil
}

// printTable prints one row per route and measure, one column per size.
func printTable(w io.Writer, routes []*sim.Result, at func(int) []*sim.Result, sizes []int) {
	head := "| route | per request |"
	sep := "| --- | --- |"
	for _, n := range sizes {
		head += fmt.Sprintf(" %d nodes |", n)
		sep += " ---: |"
	}
	fmt.Fprintf(w, "\n%s\n%s\n", head, sep)
	rows := []struct {
		name string
		cell func(r *sim.Result) string
	}{
		{"agent requests", func(r *sim.Result) string { return fmt.Sprintf("%.2f", r.Agent) }},
		{"MUNGE operations", func(r *sim.Result) string {
			return fmt.Sprintf("%.2f (%.2f+%.2f+%.2f)", r.Munge, r.MungeByRole[sim.RoleClient], r.MungeByRole[sim.RoleManager], r.MungeByRole[sim.RoleAgent])
		}},
		{"Slurm commands", func(r *sim.Result) string { return fmt.Sprintf("%.2f", r.Slurm) }},
		{"p50", func(r *sim.Result) string { return fmt.Sprintf("%.1f ms", r.P50) }},
		{"p99", func(r *sim.Result) string { return fmt.Sprintf("%.1f ms", r.P99) }},
		{"manager RSS after", func(r *sim.Result) string { return fmt.Sprintf("%.1f MiB", float64(r.RSS)/1024) }},
	}
	for i, rt := range routes {
		col := at(i)
		for _, row := range rows {
			line := fmt.Sprintf("| %s (%d) | %s |", rt.Name, rt.Requests, row.name)
			for _, r := range col {
				line += " " + row.cell(r) + " |"
			}
			fmt.Fprintln(w, line)
		}
	}
	line := "| manager | peak RSS |"
	for _, r := range at(len(routes) - 1) {
		line += fmt.Sprintf(" %.1f MiB |", float64(r.Peak)/1024)
	}
	fmt.Fprintln(w, line)
	fmt.Fprintln(w, "\nMUNGE operations: all (client + manager + agents). Failures:")
	for i, rt := range routes {
		for k, r := range at(i) {
			if r.Failures > 0 {
				fmt.Fprintf(w, "  %s at %d nodes: %d of %d failed, first: %s\n", rt.Name, sizes[k], r.Failures, r.Requests, r.Failure)
			}
		}
	}
}
