package sim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The stand-ins answer exactly the questions baicommit-manager asks
// (package internal/slurm), from the plan's files, and refuse anything
// else loudly: a question the simulation does not know must not pass
// unnoticed.
const squeueScript = `#!/bin/sh
# squeue stand-in of the baicommit simulation: jobs from $DATA/jobs (id|user|state|nodes).
printf q >> "DATA/calls"
user= jobs= states= fmt=
while [ $# -gt 0 ]; do
	case "$1" in
	--noheader) ;;
	--user) user=$2; shift ;;
	--jobs) jobs=$2; shift ;;
	--states) states=$2; shift ;;
	--format) fmt=$2; shift ;;
	*) echo "squeue (simulation): unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
case "$fmt" in
"%N"|"%i|%u|%T|%N") ;;
*) echo "squeue (simulation): unknown format $fmt" >&2; exit 2 ;;
esac
# Without --states (and without --jobs), squeue lists pending, running and completing jobs.
if [ -z "$states" ] && [ -z "$jobs" ]; then states=PENDING,RUNNING,COMPLETING; fi
exec awk -F'|' -v user="$user" -v jobs="$jobs" -v states="$states" -v fmt="$fmt" '
BEGIN { n = split(states, s, ","); for (i = 1; i <= n; i++) want[toupper(s[i])] = 1 }
user != "" && $2 != user { next }
jobs != "" && $1 != jobs { next }
states != "" && tolower(states) != "all" && !($3 in want) { next }
{ if (fmt == "%N") print $4; else print $0 }
' "DATA/jobs"
`

const sinfoScript = `#!/bin/sh
# sinfo stand-in of the baicommit simulation: every node, one a line.
printf i >> "DATA/calls"
if [ "$*" != "--noheader --Node --format %N" ]; then
	echo "sinfo (simulation): unknown arguments $*" >&2; exit 2
fi
exec cat "DATA/nodes"
`

const scontrolScript = `#!/bin/sh
# scontrol stand-in of the baicommit simulation: host lists are plain, comma-separated.
printf c >> "DATA/calls"
if [ "$1 $2" != "show hostnames" ] || [ $# -ne 3 ]; then
	echo "scontrol (simulation): unknown arguments $*" >&2; exit 2
fi
printf '%s\n' "$3" | tr ',' '\n'
`

// WriteSlurm writes the stand-ins and their data into dir (readable and
// runnable by everyone: the manager's account runs them) and returns the
// directory to give as slurm_bin_dir. Each run of a stand-in is counted
// (SlurmCalls).
func WriteSlurm(p *Plan, dir string) (string, error) {
	bin, data := filepath.Join(dir, "bin"), filepath.Join(dir, "data")
	for _, d := range []string{bin, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	var nodes, jobs strings.Builder
	for _, n := range p.Nodes {
		fmt.Fprintln(&nodes, n.Name)
	}
	for _, j := range p.Jobs {
		fmt.Fprintf(&jobs, "%s|%s|%s|%s\n", j.ID, j.User, j.State, strings.Join(j.Nodes, ","))
	}
	files := map[string]struct {
		text string
		mode os.FileMode
	}{
		filepath.Join(data, "nodes"):   {nodes.String(), 0o644},
		filepath.Join(data, "jobs"):    {jobs.String(), 0o644},
		filepath.Join(bin, "squeue"):   {strings.ReplaceAll(squeueScript, "DATA", data), 0o755},
		filepath.Join(bin, "sinfo"):    {strings.ReplaceAll(sinfoScript, "DATA", data), 0o755},
		filepath.Join(bin, "scontrol"): {strings.ReplaceAll(scontrolScript, "DATA", data), 0o755},
		// Each command adds a letter: what the manager asked of Slurm.
		filepath.Join(data, "calls"): {"", 0o666},
	}
	for p, f := range files {
		if err := os.WriteFile(p, []byte(f.text), f.mode); err != nil {
			return "", err
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return "", err
		}
	}
	return bin, nil
}

// SlurmCalls counts the runs of each stand-in written into dir.
func SlurmCalls(dir string) (map[string]int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "data", "calls"))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{"squeue": 0, "sinfo": 0, "scontrol": 0}
	for _, c := range b {
		switch c {
		case 'q':
			out["squeue"]++
		case 'i':
			out["sinfo"]++
		case 'c':
			out["scontrol"]++
		}
	}
	return out, nil
}
