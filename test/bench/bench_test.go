package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		assert.Check(t, is.Equal(median(tc.xs), tc.want), "%v", tc.xs)
	}
}

// A plan runs its pipelines, records the last JSON line each printed,
// computes ratios from medians and judges the goals.
func TestRunPlan(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "after")
	plan := &Plan{
		Title: "test", Reps: 2,
		Pipelines: []Pipeline{
			{ID: "slow", Title: "sleep 0.2", Argv: []string{"sh", "-c", "sleep 0.2; echo '{\"output_bytes\": 42}'"}},
			{ID: "fast", Title: "true", Argv: []string{"true"}, After: []string{"touch", marker}},
		},
		Processes: []ProcGroup{{Name: "self", Root: os.Getpid()}},
		Disks:     []Disk{{Name: "tmp", Path: dir}},
		Ratios:    []Ratio{{Name: "speedup", Num: "slow", Den: "fast"}},
		Goals: []Goal{
			{Name: "fast is faster", Of: "speedup", Op: ">", Limit: 1},
			{Name: "tests use little memory", Of: "memory:self", Pipeline: "slow", Op: "<", Limit: 4096},
			{Name: "an impossible goal", Of: "speedup", Op: "<", Limit: 0},
		},
	}
	assert.NilError(t, plan.validate())
	var out strings.Builder
	res, err := run(plan, &out)
	assert.NilError(t, err)
	assert.Check(t, is.Len(res.Pipelines[0].Runs, 2))
	assert.Check(t, res.Pipelines[0].MedianSeconds >= 0.2)
	assert.Check(t, is.Equal(res.Pipelines[0].Runs[0].Report["output_bytes"], 42.0))
	assert.Check(t, res.Ratios["speedup"] > 1)
	assert.Check(t, res.Goals[0].Met && res.Goals[0].Known)
	assert.Check(t, res.Goals[1].Met && res.Goals[1].Value > 0, "%+v", res.Goals[1])
	assert.Check(t, !res.Goals[2].Met)
	_, err = os.Stat(marker)
	assert.Check(t, err, "after ran")
	report(&out, plan, res)
	assert.Check(t, is.Contains(out.String(), "| (slow) sleep 0.2 |"))
	assert.Check(t, is.Contains(out.String(), "NOT met"))
}

func TestPlanValidate(t *testing.T) {
	for _, p := range []Plan{
		{Reps: 0, Pipelines: []Pipeline{{ID: "a", Argv: []string{"true"}}}},
		{Reps: 1},
		{Reps: 1, Pipelines: []Pipeline{{ID: "a", Argv: []string{"true"}}, {ID: "a", Argv: []string{"true"}}}},
		{Reps: 1, Pipelines: []Pipeline{{ID: "a", Argv: []string{"true"}}}, Ratios: []Ratio{{Num: "a", Den: "b"}}},
		{Reps: 1, Pipelines: []Pipeline{{ID: "a", Argv: []string{"true"}}}, Goals: []Goal{{Op: "=="}}},
	} {
		assert.Check(t, p.validate() != nil, "%+v", p)
	}
}

// A goal on what a pipeline wrote reads it from its report.
func TestWrittenGoal(t *testing.T) {
	plan := &Plan{
		Title: "written", Reps: 3,
		Pipelines: []Pipeline{{ID: "c", Title: "store", Written: "store.written",
			Argv: []string{"echo", `{"store": {"written": 2097152}}`}}},
		Goals: []Goal{{Name: "writes at most 3 MiB", Of: "written", Pipeline: "c", Op: "<=", Limit: 3}},
	}
	assert.NilError(t, plan.validate())
	var out strings.Builder
	res, err := run(plan, &out)
	assert.NilError(t, err)
	assert.Assert(t, is.Len(res.Goals, 1))
	assert.Check(t, res.Goals[0].Known && res.Goals[0].Met, "%+v", res.Goals[0])
	assert.Check(t, is.Equal(res.Goals[0].Value, 2.0))
	report(&out, plan, res)
	assert.Check(t, is.Contains(out.String(), "(c) wrote 2.0 MiB"))
}
