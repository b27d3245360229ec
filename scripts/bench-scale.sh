#!/usr/bin/env bash
# The manager at scale: a simulated cluster (test/scale/sim) of 100, 500 and 2,000 nodes on
# this machine, loopback only, each size in turn: the real baicommit-manager, the real agent
# code serving every node (500 to a process, a fake Podman behind the agent's seam), the real
# munged behind counting proxies, stand-ins for squeue/sinfo/scontrol. 10 users, 5 clients
# each (50 in all), send each route's requests; it prints, per route, agent requests and
# MUNGE operations per user request, p50/p99 latency and the manager's peak RSS. It only
# reports: it never fails on a number. Run as root after scripts/setup.sh, alone on the
# machine (it takes the e2e lock: the tests share munged):
#
#   bash scripts/bench-scale.sh                (or: make bench-scale)
#   BENCH_SCALE_NODES=100,500,2000,5000 bash scripts/bench-scale.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="/usr/local/go/bin:$PATH"
[[ $(id -u) -eq 0 ]] || { echo "bench-scale: run as root" >&2; exit 1; }
bin="$(mktemp -d /var/tmp/baicommit-bench-scale.XXXXXX)"
trap 'rm -rf "$bin"' EXIT
make --no-print-directory -s build build-sim BIN="$bin" >/dev/null
printf 'machine: %s cores, load %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
flock /tmp/baicommit-e2e.lock "$bin/baicommit-sim" bench --nodes "${BENCH_SCALE_NODES:-100,500,2000}" \
    --json "$REPO/bench-scale-results.json" | tee "$REPO/bench-scale-results.md"
