#!/usr/bin/env bash
# Manager load benchmark: 50 clients ask one manager replica for a task's status 2,000
# times through an agent on loopback, each request with its own MUNGE credential (the
# e2e test TestManagerLoad, which fails only on request errors, never on timings).
# It runs twice in the same go:
#   naive     manager and agent run `munge`/`unmunge` for every credential
#   baicommit manager and agent call libmunge (the libmunge build tag, as shipped)
# and prints the latency percentiles and the ratios. Run as root after scripts/setup.sh:
#
#   bash scripts/bench-manager.sh        (or: make bench-manager; BENCH_REPS=3 runs each)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="/usr/local/go/bin:$PATH"
# The Makefile's tags: the shipped build, and the same without libmunge.
TAGS="$(make -s print-TEST_TAGS)"
TAGS_NOLIB="$(make -s print-PODMAN_TAGS)"
work="$(mktemp -d /var/tmp/baicommit-bench-manager.XXXXXX)"
trap 'rm -rf "$work"' EXIT

build() { # DIR AGENT_TAGS MANAGER_TAGS
    make --no-print-directory -s build BIN="$1" AGENT_TAGS="$2" MANAGER_TAGS="$3" >/dev/null
}
echo "building both variants…"
build "$work/naive" "$TAGS_NOLIB" ""
build "$work/lib" "$TAGS" libmunge

REPS="${BENCH_REPS:-3}"
run() { # NAME DIR REP
    BAICOMMIT_BIN_DIR="$2" BAICOMMIT_LOAD_RESULT="$work/$1.$3.json" \
        go test -count=1 -tags "$TAGS" -run '^TestManagerLoad$' -v ./test/e2e/ | grep -E 'LOAD|^(--- FAIL|FAIL)' || true
    [[ -s "$work/$1.$3.json" ]] || { echo "bench-manager: the $1 run failed" >&2; exit 1; }
}
# Alternate the two, so a change in the machine's load touches both alike.
for rep in $(seq "$REPS"); do
    run naive "$work/naive" "$rep"
    run baicommit "$work/lib" "$rep"
done

# Medians over the repetitions.
median() { jq -s 'map(.'"$2"') | sort | .[(length - 1) / 2 | floor] | . * 1000 | round / 1000' "$work/$1".*.json; }
row() { # LABEL FIELD UNIT
    local n b
    n="$(median naive "$2")" b="$(median baicommit "$2")"
    printf '| %s | %s %s | %s %s | %sx |\n' "$1" "$n" "$3" "$b" "$3" "$(jq -n "($n / $b) * 100 | floor / 100")"
}
{
    printf '\nmedians of %s runs each (%s)\n\n' "$REPS" "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "| 50 clients, 2,000 status requests | naive (munge/unmunge processes) | baicommit (libmunge) | naive/baicommit |"
    echo "|---|---|---|---|"
    row "wall time" seconds s
    row "p50" p50_ms ms
    row "p90" p90_ms ms
    row "p99" p99_ms ms
    printf '| manager peak RSS | %s | %s | |\n' "$(jq -rs 'map(.manager_peak_rss) | join(", ")' "$work"/naive.*.json)" \
        "$(jq -rs 'map(.manager_peak_rss) | join(", ")' "$work"/baicommit.*.json)"
} | tee bench-manager-results.md
