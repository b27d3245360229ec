package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
)

func numCPU() int { return runtime.NumCPU() }

// median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (p *PipelineResult) seconds() []float64 {
	var out []float64
	for _, r := range p.Runs {
		out = append(out, r.Seconds)
	}
	return out
}

func byID(res *Results, id string) *PipelineResult {
	for _, p := range res.Pipelines {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// peak is the largest value over a pipeline's runs of what f picks.
func peak(p *PipelineResult, f func(Sampled) (float64, bool)) (float64, bool) {
	best, known := 0.0, false
	for _, r := range p.Runs {
		if v, ok := f(r.Sampled); ok {
			best, known = max(best, v), true
		}
	}
	return best, known
}

func summarize(plan *Plan, res *Results) {
	for _, p := range res.Pipelines {
		p.MedianSeconds = median(p.seconds())
	}
	for _, r := range plan.Ratios {
		num, den := byID(res, r.Num), byID(res, r.Den)
		if den.MedianSeconds > 0 {
			res.Ratios[r.Name] = num.MedianSeconds / den.MedianSeconds
		}
	}
	for _, g := range plan.Goals {
		gr := GoalResult{Goal: g}
		switch {
		case g.Of == "written":
			if p := byID(res, g.Pipeline); p != nil {
				var pl Pipeline
				for _, x := range plan.Pipelines {
					if x.ID == g.Pipeline {
						pl = x
					}
				}
				if v, ok := writtenMedian(p, pl.Written); ok {
					gr.Value, gr.Known = v/(1<<20), true
				}
			}
		case strings.HasPrefix(g.Of, "memory:") || strings.HasPrefix(g.Of, "disk:"):
			p := byID(res, g.Pipeline)
			if p == nil {
				break
			}
			kind, name, _ := strings.Cut(g.Of, ":")
			gr.Value, gr.Known = peak(p, func(s Sampled) (float64, bool) {
				if kind == "disk" {
					v, ok := s.DiskGrowth[name]
					return float64(v) / (1 << 20), ok
				}
				v, ok := s.Combined[name]
				return float64(v) / 1024, ok
			})
		default:
			gr.Value, gr.Known = res.Ratios[g.Of]
		}
		if gr.Known {
			switch g.Op {
			case "<=":
				gr.Met = gr.Value <= g.Limit
			case "<":
				gr.Met = gr.Value < g.Limit
			case ">=":
				gr.Met = gr.Value >= g.Limit
			case ">":
				gr.Met = gr.Value > g.Limit
			}
		}
		res.Goals = append(res.Goals, gr)
	}
}

func mib(kib int64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }

func report(w io.Writer, plan *Plan, res *Results) {
	fmt.Fprintf(w, "\n==> results: %s; %d run(s), median wall seconds; %d cores, load average %s before, %s after\n",
		res.Title, plan.Reps, res.Cores, res.Load[0], res.Load[1])
	fmt.Fprintf(w, "\n| pipeline | wall s (median of %d) | runs |\n| --- | ---: | --- |\n", plan.Reps)
	for _, p := range res.Pipelines {
		var runs []string
		for _, s := range p.seconds() {
			runs = append(runs, fmt.Sprintf("%.2f", s))
		}
		fmt.Fprintf(w, "| (%s) %s | %.2f | %s |\n", p.ID, strings.ReplaceAll(p.Title, "|", `\|`), p.MedianSeconds, strings.Join(runs, ", "))
	}
	if len(plan.Ratios) > 0 {
		fmt.Fprintf(w, "\n| ratio | value |\n| --- | ---: |\n")
		for _, r := range plan.Ratios {
			if v, ok := res.Ratios[r.Name]; ok {
				fmt.Fprintf(w, "| %s (%s / %s) | %.2fx |\n", r.Name, r.Num, r.Den, v)
			}
		}
	}
	for _, p := range res.Pipelines {
		// A baicommit task reports its own phase times.
		durs := map[string][]float64{}
		var keys []string
		for _, r := range p.Runs {
			d, _ := r.Report["durations"].(map[string]any)
			for k, v := range d {
				if f, ok := v.(float64); ok {
					if _, seen := durs[k]; !seen {
						keys = append(keys, k)
					}
					durs[k] = append(durs[k], f)
				}
			}
		}
		if len(keys) > 0 {
			slices.Sort(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s %.2f s", k, median(durs[k])))
			}
			fmt.Fprintf(w, "\n(%s) as the agent timed it (medians): %s\n", p.ID, strings.Join(parts, ", "))
		}
	}
	for i, p := range res.Pipelines {
		if v, ok := writtenMedian(p, plan.Pipelines[i].Written); ok {
			fmt.Fprintf(w, "\n(%s) wrote %.1f MiB (median; %s of its report)", p.ID, v/(1<<20), plan.Pipelines[i].Written)
		}
	}
	fmt.Fprintln(w)
	if len(plan.Processes) > 0 || len(plan.Disks) > 0 {
		fmt.Fprintf(w, "\npeaks while each pipeline ran (over all runs):\n")
		for _, p := range res.Pipelines {
			var parts []string
			for _, g := range plan.Processes {
				v, _ := peak(p, func(s Sampled) (float64, bool) { return float64(s.Groups[g.Name].PeakRSSKiB), true })
				a, _ := peak(p, func(s Sampled) (float64, bool) { return float64(s.Groups[g.Name].PeakAnonKiB), true })
				n, _ := peak(p, func(s Sampled) (float64, bool) { return float64(s.Groups[g.Name].MaxProcs), true })
				if n > 0 {
					parts = append(parts, fmt.Sprintf("%s %s MiB RSS (%s anonymous, %d procs)", g.Name, mib(int64(v)), mib(int64(a)), int(n)))
				}
			}
			for _, d := range plan.Disks {
				v, _ := peak(p, func(s Sampled) (float64, bool) { return float64(s.DiskGrowth[d.Name]), true })
				parts = append(parts, fmt.Sprintf("%s +%.1f MiB", d.Name, v/(1<<20)))
			}
			fmt.Fprintf(w, "    (%s) %s\n", p.ID, strings.Join(parts, "; "))
		}
	}
	if len(res.Goals) > 0 {
		fmt.Fprintf(w, "\ngoals:\n")
		for _, g := range res.Goals {
			state := "unknown"
			if g.Known {
				state = map[bool]string{true: "met", false: "NOT met"}[g.Met]
			}
			fmt.Fprintf(w, "    %-60s %-8s %.2f %s %g\n", g.Name+":", state, g.Value, g.Op, g.Limit)
		}
	}
}

// reportValue is the number at the dotted path in a run's report.
func reportValue(m map[string]any, path string) (float64, bool) {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return 0, false
		}
		cur = obj[k]
	}
	v, ok := cur.(float64)
	return v, ok
}

// writtenMedian is the median of what a pipeline's runs wrote, by their
// reports (path: Pipeline.Written).
func writtenMedian(p *PipelineResult, path string) (float64, bool) {
	if path == "" {
		return 0, false
	}
	var xs []float64
	for _, r := range p.Runs {
		if v, ok := reportValue(r.Report, path); ok {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return 0, false
	}
	return median(xs), true
}
