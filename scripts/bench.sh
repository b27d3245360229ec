#!/usr/bin/env bash
# baicommit benchmark: how long a freeze takes, how much memory and node-local disk it
# needs, next to the pipelines people use by hand and to the limit of the machine, on
# native rootless overlay and on vfs in one run. A benchmark, not a test: it reports
# numbers and says whether the goals are met, but never fails because of one. As root:
#
#   bash scripts/bench.sh                       (or: make bench)
#   BENCH_MB=500 BENCH_DATA=mixed BENCH_REPS=3 bash scripts/bench.sh
#
# Knobs (environment):
#   BENCH_MB       MiB written into each session before freezing it (default 500)
#   BENCH_DATA     mixed: half /dev/urandom, half compressible; random; compressible
#   BENCH_REPS     repetitions of each pipeline; the tables show medians (default 1)
#   BENCH_STORES   which stores: "overlay vfs" (default), or one of them
#   BENCH_TMPDIR   where the temporary directory goes (default /var/tmp)
#
# Per store, a user (bcbench: vfs, bcbenchovl: native overlay; Podman 4.3.1) runs a busybox
# session holding the data, and each repetition freezes it four ways:
#   naive  podman commit + podman save | gzip          (what people type)
#   save   podman commit + podman save > /dev/null     (Podman's own floor, nothing written)
#   limit  podman exec tar of the changed files | pigz -1   (the limit proxy: read once, compress)
#   freeze baicommit commit --wait                    (through a private agent, service warm)
# Archives and outputs go to a tmpfs standing in for the shared filesystem, so that the
# growth of the node's own disk while each runs is what the pipeline staged there. This
# script sets up; the pipelines are scripts/bench/*.sh and the CLI; timing, sampling,
# medians, ratios, goals and bench-results.json are the Go program test/bench.
set -euo pipefail
export LC_ALL=C

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="/usr/local/go/bin:$PATH"

BASE_IMAGE=localhost/busybox:latest
BENCH_MB="${BENCH_MB:-500}"
BENCH_DATA="${BENCH_DATA:-mixed}"
BENCH_REPS="${BENCH_REPS:-1}"
BENCH_STORES="${BENCH_STORES:-overlay vfs}"
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
declare -A STORE_USER=([vfs]=bcbench [overlay]=bcbenchovl)

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nbench: ERROR: %s\n' "$*" >&2; exit 1; }
. "$REPO/scripts/bench/agent.sh"

[[ $(id -u) -eq 0 ]] || die "run as root (the agent is a root daemon)"
[[ "$BENCH_MB" =~ ^[0-9]+$ ]] && ((BENCH_MB >= 2)) || die "BENCH_MB must be an integer >= 2 (got '$BENCH_MB')"
[[ "$BENCH_REPS" =~ ^[0-9]+$ ]] && ((BENCH_REPS >= 1)) || die "BENCH_REPS must be an integer >= 1 (got '$BENCH_REPS')"
case "$BENCH_DATA" in
    mixed) RANDOM_MB=$((BENCH_MB / 2)) ;;
    random) RANDOM_MB=$BENCH_MB ;;
    compressible) RANDOM_MB=0 ;;
    *) die "BENCH_DATA must be mixed, random or compressible (got '$BENCH_DATA')" ;;
esac
for s in $BENCH_STORES; do
    [[ -n "${STORE_USER[$s]:-}" ]] || die "BENCH_STORES: unknown store '$s' (want overlay and/or vfs)"
done

as_user() { # USER CMD...
    local u="$1"; shift
    (cd / && runuser -u "$u" -- env -i HOME="/home/$u" USER="$u" LOGNAME="$u" PATH=/usr/local/bin:/usr/bin:/bin "$@")
}
argv() { printf '%s\n' "$@" | jq -R . | jq -cs .; }  # "$@" as a JSON array (no newlines in it)
as_cmd() { # the argv of running CMD as USER, as JSON
    local u="$1"; shift
    argv runuser -u "$u" -- env -i HOME="/home/$u" USER="$u" LOGNAME="$u" PATH=/usr/local/bin:/usr/bin:/bin "$@"
}

say "machine set-up (scripts/setup.sh, users ${STORE_USER[*]})"
bash scripts/setup.sh | sed 's/^/    /'
for s in $BENCH_STORES; do
    u="${STORE_USER[$s]}"
    bash scripts/setup.sh user "$u" | sed 's/^/    /'
    uid="$(id -u "$u")"
    mkdir -p "/home/$u/.config/containers"
    printf '[storage]\ndriver = "%s"\nrunroot = "/tmp/podman-run-%s/containers"\ngraphroot = "/home/%s/.local/share/containers/storage"\n' \
        "$s" "$uid" "$u" >"/home/$u/.config/containers/storage.conf"
    chown -R "$u:" "/home/$u/.config"
    driver="$(as_user "$u" podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null || true)"
    if [[ "$driver" != "$s" ]]; then
        # A store is created with the first driver used: start this one afresh.
        as_user "$u" podman system reset -f >/dev/null 2>&1 || true
    fi
    bash scripts/setup.sh base-image "$u" | sed 's/^/    /'
done

WORK="$(mktemp -d "$BENCH_TMPDIR/baicommit-bench.XXXXXX")"
chmod 0755 "$WORK"
say "build (make build into $WORK/bin; go build of test/bench)"
make --no-print-directory build BIN="$WORK/bin"
go build -o "$WORK/bin/bench" ./test/bench
install -m 0755 scripts/bench/naive.sh scripts/bench/limit.sh "$WORK/bin/"

SUFFIX="$(tr '[:upper:]' '[:lower:]' <<<"${WORK##*.}")"
SOCK="$WORK/agent.sock"
SHARED="$WORK/shared"   # the shared filesystem stand-in: a tmpfs
SAVE_ROOT="$SHARED/save"
mkdir -p "$WORK/state" "$WORK/run" "$SHARED"
mount -t tmpfs -o size=$((BENCH_MB * 3 + 256))m,mode=0755 baicommit-bench "$SHARED"
mkdir -p "$SAVE_ROOT"
chmod 1777 "$SAVE_ROOT"

AGENT_PID=""
cleanup() {
    local rc=$? s u
    set +e
    trap - EXIT INT TERM
    [[ -n "$AGENT_PID" ]] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
    for s in $BENCH_STORES; do
        u="${STORE_USER[$s]}"
        stop_podman_services "$u"
        as_user "$u" podman rm -f -t 0 "bench-$SUFFIX" >/dev/null 2>&1
        as_user "$u" sh -c "podman images --format '{{.Repository}}:{{.Tag}}' | grep -E '^localhost/baicommit(-bench-$SUFFIX|/bench-$SUFFIX)' | xargs -r podman rmi -f" >/dev/null 2>&1
    done
    umount "$SHARED" 2>/dev/null
    rm -rf "${WORK:?}/bin" "$WORK/state" "$WORK/run" "$SOCK" "$SHARED"
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

CTR="bench-$SUFFIX"
for s in $BENCH_STORES; do
    u="${STORE_USER[$s]}"
    say "session ($s): $u runs $CTR and writes $BENCH_MB MiB ($BENCH_DATA) into it"
    as_user "$u" podman run -d --name "$CTR" --network=none "$BASE_IMAGE" sleep 100000 >/dev/null
    as_user "$u" podman cp "$REPO/scripts/bench/write-data.sh" "$CTR:/write-data.sh"
    as_user "$u" podman exec "$CTR" /bin/busybox sh /write-data.sh "$RANDOM_MB" $((BENCH_MB * 1048576 - RANDOM_MB * 1048576)) | sed 's/^/    written: /'
done

say "agent: $WORK/bin/baicommit-agent on unix://$SOCK, archives on the tmpfs $SAVE_ROOT"
start_agent bench.sh
for s in $BENCH_STORES; do
    # Freezes are timed with the agent's transient Podman service already running.
    as_user "${STORE_USER[$s]}" "$WORK/bin/baicommit" --agent "unix://$SOCK" sessions >/dev/null ||
        die "the agent cannot reach ${STORE_USER[$s]}'s Podman"
done

pipelines="[]" processes="[]" ratios="[]" goals="[]" disks="[]"
add() { local var="$1"; shift; printf -v "$var" '%s' "$(jq -c --argjson x "$1" '. + [$x]' <<<"${!var}")"; }
for s in $BENCH_STORES; do
    u="${STORE_USER[$s]}"
    out="$SHARED/out-$s"
    mkdir -p "$out" && chown "$u:" "$out"
    img="localhost/baicommit-bench-$SUFFIX-$s:latest"
    rm_out="$(as_cmd "$u" sh -c "rm -f '$out'/*; podman rmi -f '$img' >/dev/null 2>&1; true")"
    add pipelines "$(jq -cn --arg id "$s-naive" --arg t "$s: podman commit + save | gzip" --argjson a "$(as_cmd "$u" "$WORK/bin/naive.sh" naive "$CTR" "$img" "$out/naive.tar.gz")" --argjson after "$rm_out" '{id: $id, title: $t, argv: $a, after: $after}')"
    add pipelines "$(jq -cn --arg id "$s-save" --arg t "$s: podman commit + save > /dev/null" --argjson a "$(as_cmd "$u" "$WORK/bin/naive.sh" save "$CTR" "$img" /dev/null)" --argjson after "$rm_out" '{id: $id, title: $t, argv: $a, after: $after}')"
    add pipelines "$(jq -cn --arg id "$s-limit" --arg t "$s: podman exec tar of the changes | pigz -1" --argjson a "$(as_cmd "$u" "$WORK/bin/limit.sh" "$CTR" /bench "$out/limit.tar.gz")" --argjson after "$rm_out" '{id: $id, title: $t, argv: $a, after: $after}')"
    add pipelines "$(jq -cn --arg id "$s-freeze" --arg t "$s: baicommit commit --wait" --argjson a "$(as_cmd "$u" "$WORK/bin/baicommit" --agent "unix://$SOCK" commit --wait --json "$CTR")" \
        --argjson after "$(argv sh -c "rm -f '$SAVE_ROOT/$u'/*.tar.gz '$SAVE_ROOT/$u'/*.json")" '{id: $id, title: $t, argv: $a, after: $after}')"
    add ratios "$(jq -cn --arg s "$s" '{name: "\($s): naive / freeze", num: "\($s)-naive", den: "\($s)-freeze"}')"
    add ratios "$(jq -cn --arg s "$s" '{name: "\($s): freeze / limit proxy", num: "\($s)-freeze", den: "\($s)-limit"}')"
    add ratios "$(jq -cn --arg s "$s" '{name: "\($s): freeze / commit + save > /dev/null", num: "\($s)-freeze", den: "\($s)-save"}')"
    add goals "$(jq -cn --arg s "$s" '{name: "\($s): freeze within 1.3x of the limit proxy", of: "\($s): freeze / limit proxy", op: "<=", limit: 1.3}')"
    add goals "$(jq -cn --arg s "$s" '{name: "\($s): freeze at least 4x faster than naive", of: "\($s): naive / freeze", op: ">=", limit: 4}')"
    add goals "$(jq -cn --arg s "$s" '{name: "\($s): agent + helpers below 100 MiB (MiB)", of: "memory:agent+helpers", pipeline: "\($s)-freeze", op: "<", limit: 100}')"
    add goals "$(jq -cn --arg s "$s" '{name: "\($s): extra node-local disk at most 64 MiB (MiB)", of: "disk:node", pipeline: "\($s)-freeze", op: "<=", limit: 64}')"
done
add processes "$(jq -cn --argjson p "$AGENT_PID" --arg m "$WORK/bin/baicommit-agent --config" '{name: "agent", root: $p, match: $m}')"
add processes "$(jq -cn --argjson p "$AGENT_PID" '{name: "helpers", root: $p, match: " as-owner "}')"
add disks "$(jq -cn --arg p "/home/${STORE_USER[${BENCH_STORES%% *}]}" '{name: "node", path: $p}')"

jq -n --arg title "freeze of $BENCH_MB MiB ($BENCH_DATA) in a running busybox session, stores: $BENCH_STORES" --argjson reps "$BENCH_REPS" \
    --argjson pipelines "$pipelines" --argjson processes "$processes" --argjson ratios "$ratios" --argjson goals "$goals" --argjson disks "$disks" \
    --arg podman "$(podman --version | awk '{ print $NF }')" --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --argjson mb "$BENCH_MB" --arg data "$BENCH_DATA" \
    '{title: $title, reps: $reps, info: {mib: $mb, data: $data, podman: $podman, commit: $commit, warm_service: true},
      pipelines: $pipelines, processes: $processes, disks: $disks, ratios: $ratios, goals: $goals}' >"$WORK/plan.json"

say "runs"
"$WORK/bin/bench" -plan "$WORK/plan.json" -out "$WORK/bench-results.json"
