#!/usr/bin/env bash
# baicommit benchmark: how long a freeze takes and how much memory it needs, next to
# the pipelines people use by hand. A benchmark, not a test: it reports numbers and
# says whether the goals are met, but never fails because of a timing. Run as root:
#
#   bash scripts/bench.sh                       (or: make bench)
#   BENCH_MB=500 BENCH_DATA=mixed BENCH_REPS=3 bash scripts/bench.sh
#
# Knobs (environment):
#   BENCH_MB       MiB written into the container before freezing it (default 500)
#   BENCH_DATA     mixed: half /dev/urandom, half compressible; random; compressible
#   BENCH_REPS     repetitions of each pipeline; the tables show medians (default 1)
#   BENCH_TMPDIR   where the temporary directory goes (default /var/tmp)
#
# This script sets the machine up (a user bcbench with a running container holding the
# data, a private agent); the pipelines are scripts/bench/*.sh and the bench user's CLI;
# timing, memory sampling, medians, ratios, goals and bench-results.json are the Go
# program test/bench, which this script hands a plan.
set -euo pipefail
export LC_ALL=C

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="/usr/local/go/bin:$PATH"

BENCH_USER=bcbench
BENCH_HOME=/home/$BENCH_USER
BASE_IMAGE=localhost/busybox:latest
BENCH_MB="${BENCH_MB:-500}"
BENCH_DATA="${BENCH_DATA:-mixed}"
BENCH_REPS="${BENCH_REPS:-1}"
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"

say() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf '\nbench: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (the agent is a root daemon)"
[[ "$BENCH_MB" =~ ^[0-9]+$ ]] && ((BENCH_MB >= 2)) || die "BENCH_MB must be an integer >= 2 (got '$BENCH_MB')"
[[ "$BENCH_REPS" =~ ^[0-9]+$ ]] && ((BENCH_REPS >= 1)) || die "BENCH_REPS must be an integer >= 1 (got '$BENCH_REPS')"
case "$BENCH_DATA" in
    mixed) RANDOM_MB=$((BENCH_MB / 2)) ;;
    random) RANDOM_MB=$BENCH_MB ;;
    compressible) RANDOM_MB=0 ;;
    *) die "BENCH_DATA must be mixed, random or compressible (got '$BENCH_DATA')" ;;
esac

as_bench() {
    (cd / && runuser -u "$BENCH_USER" -- env -i HOME="$BENCH_HOME" USER="$BENCH_USER" \
        LOGNAME="$BENCH_USER" PATH=/usr/local/bin:/usr/bin:/bin "$@")
}

say "machine set-up (scripts/setup.sh, user $BENCH_USER)"
bash scripts/setup.sh | sed 's/^/    /'
bash scripts/setup.sh user "$BENCH_USER" | sed 's/^/    /'

WORK="$(mktemp -d "$BENCH_TMPDIR/baicommit-bench.XXXXXX")"
chmod 0755 "$WORK"
say "build (make build into $WORK/bin; go build of test/bench)"
make --no-print-directory build BIN="$WORK/bin"
go build -o "$WORK/bin/bench" ./test/bench
install -m 0755 scripts/bench/naive.sh "$WORK/bin/"

SUFFIX="$(tr '[:upper:]' '[:lower:]' <<<"${WORK##*.}")"
CTR="bench-$SUFFIX"
IMG_PREFIX="localhost/baicommit-bench-$SUFFIX"
SOCK="$WORK/agent.sock"
SAVE_ROOT="$WORK/save"
SAVE_DIR="$SAVE_ROOT/$BENCH_USER"
SCRATCH="$WORK/scratch"
mkdir -p "$WORK/state" "$WORK/run" "$SAVE_ROOT" "$SCRATCH"
chmod 1777 "$SAVE_ROOT"
chown "$BENCH_USER:" "$SCRATCH"
chmod 0700 "$SCRATCH"

AGENT_PID=""
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n "$AGENT_PID" ]]; then
        kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
    fi
    # Transient Podman services our agent started name our private run_dir.
    pkill -u "$BENCH_USER" -f "unix://$WORK/run/" 2>/dev/null
    as_bench podman rm -f -t 0 "$CTR" >/dev/null 2>&1
    local imgs
    imgs="$(as_bench podman images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null |
        grep -E "^($IMG_PREFIX-|localhost/baicommit/$CTR:)" || true)"
    # shellcheck disable=SC2086  # a list of image names
    [[ -n "$imgs" ]] && as_bench podman rmi -f $imgs >/dev/null 2>&1
    rm -rf "$SCRATCH" "$SAVE_ROOT" "${WORK:?}/bin" "$WORK/state" "$WORK/run" "$SOCK"
    if ((rc != 0)) && [[ -s "$WORK/agent.log" ]]; then
        printf '\n--- last lines of the agent log ---\n' >&2
        tail -n 30 "$WORK/agent.log" >&2
    fi
    echo
    echo "bench: kept in $WORK: bench-results.json (when finished), plan.json, agent.log"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "session: $BENCH_USER runs $CTR ($BASE_IMAGE, --network=none) and writes $BENCH_MB MiB ($BENCH_DATA) into it"
as_bench podman run -d --name "$CTR" --network=none "$BASE_IMAGE" sleep 100000 >/dev/null
as_bench podman cp "$REPO/scripts/bench/write-data.sh" "$CTR:/write-data.sh"
as_bench podman exec "$CTR" /bin/busybox sh /write-data.sh "$RANDOM_MB" $((BENCH_MB * 1048576 - RANDOM_MB * 1048576)) | sed 's/^/    written: /'

say "agent: $WORK/bin/baicommit-agent on unix://$SOCK"
cat >"$WORK/agent.toml" <<TOML
# scripts/bench.sh
node_name = "bench"
state_dir = "$WORK/state"
run_dir = "$WORK/run"
save_path = "$SAVE_ROOT/{user}"
save_roots = ["$SAVE_ROOT"]
idle_exit = "0s"
transient_service_idle = "600s"
TOML
"$WORK/bin/baicommit-agent" --config "$WORK/agent.toml" --listen "unix://$SOCK" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 100); do
    kill -0 "$AGENT_PID" 2>/dev/null || die "the agent exited: $(cat "$WORK/agent.log")"
    "$WORK/bin/baicommit" --agent "unix://$SOCK" version >/dev/null 2>&1 && break
    sleep 0.1
done
# Freezes are timed with the agent's transient Podman service already running.
as_bench "$WORK/bin/baicommit" --agent "unix://$SOCK" sessions >/dev/null || die "the agent cannot reach $BENCH_USER's Podman"

BENCH_UID="$(id -u "$BENCH_USER")"
argv() { printf '%s\n' "$@" | jq -R . | jq -cs .; }  # "$@" as a JSON array (no newlines in it)
as_cmd() { # the argv of running "$@" as the bench user, as JSON
    argv runuser -u "$BENCH_USER" -- env -i HOME="$BENCH_HOME" USER="$BENCH_USER" \
        LOGNAME="$BENCH_USER" PATH=/usr/local/bin:/usr/bin:/bin "$@"
}
naive() { # ID TITLE
    jq -cn --arg id "$1" --arg title "$2" --argjson argv "$(as_cmd "$WORK/bin/naive.sh" "$1" "$CTR" "$IMG_PREFIX-$1:latest" "$SCRATCH/$1.tar.gz")" \
        --argjson after "$(as_cmd sh -c "rm -f '$SCRATCH/$1.tar.gz'; podman rmi -f '$IMG_PREFIX-$1:latest' >/dev/null")" \
        '{id: $id, title: $title, argv: $argv, after: $after}'
}
jq -n --arg title "freeze of $BENCH_MB MiB ($BENCH_DATA) in a running busybox session" --argjson reps "$BENCH_REPS" \
    --argjson a "$(naive a 'podman commit + save | gzip')" \
    --argjson b "$(naive b 'podman commit + save | pigz')" \
    --argjson c "$(naive c 'podman commit + save > /dev/null')" \
    --argjson d_argv "$(as_cmd "$WORK/bin/baicommit" --agent "unix://$SOCK" commit --wait --json "$CTR")" \
    --argjson d_after "$(argv sh -c "rm -f '$SAVE_DIR'/*.tar.gz '$SAVE_DIR'/*.json")" \
    --argjson agent "$AGENT_PID" --argjson uid "$BENCH_UID" --arg agent_match "$WORK/bin/baicommit-agent --config" \
    --arg podman "$(podman --version | awk '{ print $NF }')" --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --argjson mb "$BENCH_MB" --arg data "$BENCH_DATA" \
    '{
      title: $title, reps: $reps,
      info: {mib: $mb, data: $data, podman: $podman, commit: $commit, warm_service: true},
      pipelines: [$a, $b, $c, {id: "d", title: "baicommit commit --wait", argv: $d_argv, after: $d_after}],
      processes: [
        {name: "agent", root: $agent, match: $agent_match},
        {name: "helpers", root: $agent, match: " as-owner "},
        {name: "podman-service", root: 0, uid: $uid, match: "system service"}
      ],
      ratios: [
        {name: "naive gzip / baicommit", num: "a", den: "d"},
        {name: "baicommit / commit + save > /dev/null", num: "d", den: "c"}
      ],
      goals: [
        {name: "freeze at least 2x faster than podman commit + save | gzip", of: "naive gzip / baicommit", op: ">=", limit: 2},
        {name: "freeze within 1.3x of podman commit + save > /dev/null", of: "baicommit / commit + save > /dev/null", op: "<=", limit: 1.3},
        {name: "agent + helpers below 100 MiB (MiB)", of: "memory:agent+helpers", pipeline: "d", op: "<", limit: 100}
      ]
    }' >"$WORK/plan.json"

say "runs"
"$WORK/bin/bench" -plan "$WORK/plan.json" -out "$WORK/bench-results.json"
