#!/usr/bin/env bash
# Manager load benchmark: 50 clients ask one manager replica for a task's status 2,000
# times through an agent on loopback, each request with its own MUNGE credential (the
# e2e test TestManagerLoad, which fails only on request errors, never on timings).
# It runs twice in the same go:
#   naive     manager and agent run `munge`/`unmunge` for every credential
#   baicommit manager and agent call libmunge (the libmunge build tag, as shipped)
# and prints the latency percentiles and the ratios. Run as root after scripts/setup.sh:
#
#   bash scripts/bench-manager.sh        (or: make bench-manager)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="/usr/local/go/bin:$PATH"
TAGS_NOLIB="remote containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
TAGS="$TAGS_NOLIB libmunge"
work="$(mktemp -d /var/tmp/baicommit-bench-manager.XXXXXX)"
trap 'rm -rf "$work"' EXIT

build() { # DIR TAGS
    mkdir -p "$1"
    CGO_ENABLED=0 go build -o "$1/baicommit" ./cmd/baicommit
    CGO_ENABLED=1 go build -tags "$2" -o "$1/baicommit-agent" ./cmd/baicommit-agent
    CGO_ENABLED=1 go build -tags "$2" -o "$1/baicommit-manager" ./cmd/baicommit-manager
    CGO_ENABLED=0 go build -o "$1/baicommit-epilog" ./cmd/baicommit-epilog
}
echo "building both variants…"
build "$work/naive" "$TAGS_NOLIB"
build "$work/lib" "$TAGS"

run() { # NAME DIR
    BAICOMMIT_BIN_DIR="$2" BAICOMMIT_LOAD_RESULT="$work/$1.json" \
        go test -count=1 -tags "$TAGS" -run '^TestManagerLoad$' -v ./test/e2e/ | grep -E 'LOAD|^(--- |ok|FAIL)'
}
run naive "$work/naive"
run baicommit "$work/lib"

jq -n --slurpfile n "$work/naive.json" --slurpfile b "$work/baicommit.json" -r '
  ($n[0]) as $n | ($b[0]) as $b |
  "\n| | naive (munge/unmunge processes) | baicommit (libmunge) | ratio |",
  "|---|---|---|---|",
  "| throughput | \($n.requests / $n.seconds | floor) req/s | \($b.requests / $b.seconds | floor) req/s | \(($n.seconds / $b.seconds) * 100 | floor / 100)x |",
  "| p50 | \($n.p50_ms) ms | \($b.p50_ms) ms | \(($n.p50_ms / $b.p50_ms) * 100 | floor / 100)x |",
  "| p90 | \($n.p90_ms) ms | \($b.p90_ms) ms | \(($n.p90_ms / $b.p90_ms) * 100 | floor / 100)x |",
  "| p99 | \($n.p99_ms) ms | \($b.p99_ms) ms | \(($n.p99_ms / $b.p99_ms) * 100 | floor / 100)x |"' |
    tee bench-manager-results.md
