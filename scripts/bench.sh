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
#   BENCH_DATA     mixed: half /dev/urandom, half compressible (copies of busybox and
#                  `seq` text); random: all /dev/urandom; compressible: no random data
#                  (default mixed)
#   BENCH_REPS     repetitions of each pipeline; the table shows medians (default 1)
#   BENCH_TMPDIR   where the temporary directory goes: archives and outputs are
#                  written there, so put it on a real disk (default /var/tmp)
#   BENCH_BUILD=1  run `make build` even when bin/ exists
#
# Pipelines, each run as user bcbench on the same running container:
#   a  podman commit + podman save | gzip          (one thread, default level)
#   b  podman commit + podman save | pigz          (all cores, default level)
#   c  podman commit + podman save > /dev/null     (no compression, nothing written)
#   d  baicommit commit --wait --json              (through a private agent started here)
# The agent's transient podman service is started before (d) is timed: freezes are
# measured with a warm service. Results go to the terminal and to bench-results.json.
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
SAMPLE_EVERY=0.1   # seconds between memory samples while (d) runs
PIPELINES=(a b c d)
declare -A TITLE=(
    [a]="podman commit + save | gzip"
    [b]="podman commit + save | pigz"
    [c]="podman commit + save > /dev/null"
    [d]="baicommit commit --wait"
)

say() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf '\nbench: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (the agent is a root daemon)"
if ! [[ "$BENCH_MB" =~ ^[0-9]+$ ]] || ((BENCH_MB < 2)); then
    die "BENCH_MB must be an integer >= 2 (got '$BENCH_MB')"
fi
if ! [[ "$BENCH_REPS" =~ ^[0-9]+$ ]] || ((BENCH_REPS < 1)); then
    die "BENCH_REPS must be an integer >= 1 (got '$BENCH_REPS')"
fi
case "$BENCH_DATA" in
    mixed | random | compressible) ;;
    *) die "BENCH_DATA must be mixed, random or compressible (got '$BENCH_DATA')" ;;
esac

# --- helpers ------------------------------------------------------------------------
# Run a command as the bench user in a clean environment, from /.
as_bench() {
    (cd / && runuser -u "$BENCH_USER" -- env -i HOME="$BENCH_HOME" USER="$BENCH_USER" \
        LOGNAME="$BENCH_USER" PATH=/usr/local/bin:/usr/bin:/bin "$@")
}

# The CLI as the bench user, talking to our agent.
cli() { as_bench "$WORK/bin/baicommit" --agent "unix://$SOCK" "$@"; }

now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
# Seconds (3 decimals) between two now_us stamps.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'; }
# Median of the numbers given.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# a / b with 2 decimals ("-" when either is missing or b is 0).
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || a == "-" || b == "" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }   # kB -> MiB
mib_bytes() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
# "met" when VALUE OP LIMIT holds (OP an awk comparison), "NOT met" when not.
holds() {
    if [[ -z "$1" || "$1" == "-" ]]; then
        echo "unknown"
    elif awk -v v="$1" -v l="$3" "BEGIN { exit !(v $2 l) }"; then
        echo "met"
    else
        echo "NOT met"
    fi
}

# VmRSS, VmHWM and RssAnon (kB) of a process into RSS_KB, HWM_KB and ANON_KB,
# without forking; returns 1 when the process is gone.
read_mem() {
    local k v
    RSS_KB=0 HWM_KB=0 ANON_KB=0
    {
        while read -r k v _; do
            case "$k" in
                VmRSS:) RSS_KB=$v ;;
                VmHWM:) HWM_KB=$v ;;
                RssAnon:) ANON_KB=$v ;;
            esac
        done
    } 2>/dev/null <"/proc/$1/status" || return 1
}

# The command line of a process, arguments joined by spaces, into CMDLINE.
read_cmdline() {
    local -a argv=()
    CMDLINE=""
    mapfile -d '' -t argv 2>/dev/null <"/proc/$1/cmdline" || return 1
    CMDLINE="${argv[*]}"
}

# PIDs of the transient podman services our agent started for the bench user
# (their command line names our private run_dir): `pkill -f $WORK/run/`, by PID.
service_pids() {
    local d pid uid
    uid="$(id -u "$BENCH_USER")"
    for d in /proc/[0-9]*; do
        pid="${d#/proc/}"
        read_cmdline "$pid" || continue
        [[ "$CMDLINE" == *"system service"*"unix://$WORK/run/"* ]] || continue
        [[ "$(stat -c %u "$d" 2>/dev/null)" == "$uid" ]] && echo "$pid"
    done
    return 0
}

# Samples memory every SAMPLE_EVERY s until killed, one line per sample:
#   ms agent_rss agent_hwm helper_rss helper_count helper_hwm_sum service_rss helper_anon  (kB)
# Helpers are the agent's children (and their children) running `__export-helper`:
# the helper re-executes itself inside the user namespace, so there are two, summed.
# helper_hwm_sum adds up the highest VmHWM seen of every helper process so far;
# helper_anon is the helpers' anonymous memory (heap, buffers: RSS without the mapped binary).
sample_mem() {
    set +e
    local agent="$1" out="$2" t0 t pid kids kids2 h_rss h_n h_anon s_rss hh
    local -a helpers=() services=()
    local -A hwm_of=()
    read -r -a services <<<"$3"
    t0=$EPOCHREALTIME t0=${t0/./}
    while read_mem "$agent"; do
        local a_rss=$RSS_KB a_hwm=$HWM_KB
        helpers=()
        kids="$(pgrep -P "$agent")"
        for pid in $kids; do
            read_cmdline "$pid" && [[ " $CMDLINE " == *" __export-helper "* ]] && helpers+=("$pid")
        done
        if ((${#helpers[@]})); then
            kids2="$(IFS=,; pgrep -P "${helpers[*]}")"
            for pid in $kids2; do
                read_cmdline "$pid" && [[ " $CMDLINE " == *" __export-helper "* ]] && helpers+=("$pid")
            done
        fi
        h_rss=0 h_n=0 h_anon=0
        for pid in "${helpers[@]}"; do
            read_mem "$pid" || continue
            h_rss=$((h_rss + RSS_KB)) h_n=$((h_n + 1)) h_anon=$((h_anon + ANON_KB))
            ((HWM_KB > ${hwm_of[$pid]:-0})) && hwm_of[$pid]=$HWM_KB
        done
        hh=0
        for pid in "${!hwm_of[@]}"; do hh=$((hh + hwm_of[$pid])); done
        s_rss=0
        for pid in "${services[@]}"; do
            read_mem "$pid" && s_rss=$((s_rss + RSS_KB))
        done
        t=$EPOCHREALTIME t=${t/./}
        echo "$(((t - t0) / 1000)) $a_rss $a_hwm $h_rss $h_n $hh $s_rss $h_anon" >>"$out"
        sleep "$SAMPLE_EVERY"
    done
}

# --- set-up -------------------------------------------------------------------------
say "machine set-up (scripts/setup.sh, user $BENCH_USER)"
bash scripts/setup.sh | sed 's/^/    /'
bash scripts/setup.sh user "$BENCH_USER" | sed 's/^/    /'
for t in jq pigz gzip pgrep runuser; do
    command -v "$t" >/dev/null || die "$t missing"
done

say "build"
if [[ "${BENCH_BUILD:-0}" == 1 || ! -x bin/baicommit || ! -x bin/baicommit-agent ]]; then
    make --no-print-directory build
else
    info "bin/ exists, not rebuilt (BENCH_BUILD=1 forces make build)"
    for b in bin/baicommit bin/baicommit-agent; do
        newer="$(find agent api client cmd policy -name '*.go' ! -name '*_test.go' -newer "$b" 2>/dev/null | head -n 3 | paste -sd' ')"
        [[ -z "$newer" ]] || info "WARNING: $b is older than some sources ($newer): run make build (or BENCH_BUILD=1) to bench the current sources"
    done
fi

mkdir -p "$BENCH_TMPDIR"
# vfs copies every layer: the container, a committed image and the outputs at once.
for d in "$BENCH_TMPDIR" "$BENCH_HOME"; do
    avail_mb=$(($(df -Pk "$d" | awk 'NR == 2 { print $4 }') / 1024))
    if ((avail_mb < 4 * BENCH_MB)); then
        info "WARNING: $d has $avail_mb MiB free; the bench needs about $((4 * BENCH_MB)) MiB"
    fi
done
WORK="$(mktemp -d "$BENCH_TMPDIR/baicommit-bench.XXXXXX")"
chmod 0755 "$WORK"
SUFFIX="$(tr '[:upper:]' '[:lower:]' <<<"${WORK##*.}")"
CTR="bench-$SUFFIX"                          # the bench user's session container
IMG_PREFIX="localhost/baicommit-bench-$SUFFIX" # images of pipelines a-c
SOCK="$WORK/agent.sock"
SAVE_ROOT="$WORK/save"
SAVE_DIR="$SAVE_ROOT/$BENCH_USER"
SCRATCH="$WORK/scratch"
RESULTS="$WORK/bench-results.json"
mkdir -p "$WORK/bin" "$WORK/state" "$WORK/run" "$SAVE_ROOT" "$SCRATCH" "$WORK/out"
chmod 1777 "$SAVE_ROOT"
chown "$BENCH_USER:" "$SCRATCH"
chmod 0700 "$SCRATCH"
# Copies the bench user can surely execute (the agent runs itself as the export helper).
install -m 0755 bin/baicommit bin/baicommit-agent "$WORK/bin/"

AGENT_PID=""
SAMPLER_PID=""
CONTAINER_MADE=""

cleanup() {
    local rc=$? pid
    set +e
    trap - EXIT INT TERM
    [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null
    # Collected before the agent goes: they name our private run_dir.
    local services
    services="$(service_pids)"
    if [[ -n "$AGENT_PID" ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill "$AGENT_PID"
        for _ in $(seq 50); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$AGENT_PID" 2>/dev/null && kill -9 "$AGENT_PID"
        wait "$AGENT_PID" 2>/dev/null
    fi
    if [[ -n "$services" ]]; then
        # shellcheck disable=SC2086  # a list of PIDs
        kill $services 2>/dev/null
        for _ in $(seq 25); do
            local alive=""
            for pid in $services; do kill -0 "$pid" 2>/dev/null && alive+=" $pid"; done
            [[ -z "$alive" ]] && break
            sleep 0.2
        done
        # shellcheck disable=SC2086
        [[ -n "$alive" ]] && kill -9 $alive 2>/dev/null
    fi
    if [[ -n "$CONTAINER_MADE" ]]; then
        as_bench podman rm -f -t 0 "$CTR" >/dev/null 2>&1
    fi
    # Images of pipelines a-c, and any frozen image a failed freeze left behind.
    local imgs
    imgs="$(as_bench podman images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null |
        grep -E "^($IMG_PREFIX-|localhost/baicommit/$CTR:)" || true)"
    # shellcheck disable=SC2086  # a list of image names
    [[ -n "$imgs" ]] && as_bench podman rmi -f $imgs >/dev/null 2>&1
    rm -rf "$SCRATCH" "$SAVE_ROOT" "${WORK:?}/bin" "$WORK/state" "$WORK/run" "$SOCK"
    if ((rc != 0)) && [[ -s "$WORK/agent.log" ]]; then
        printf '\n--- last lines of the agent log (%s) ---\n' "$WORK/agent.log" >&2
        tail -n 30 "$WORK/agent.log" >&2
    fi
    echo
    echo "bench: kept in $WORK: bench-results.json (when finished), agent.log, out/ (task JSON, memory samples)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the session container ------------------------------------------------------------------
say "session: $BENCH_USER runs $CTR ($BASE_IMAGE, --network=none) and writes $BENCH_MB MiB into it"
CONTAINER_MADE=1
as_bench podman run -d --name "$CTR" --network=none "$BASE_IMAGE" sleep 100000 >/dev/null

TOTAL_BYTES=$((BENCH_MB * 1048576))
case "$BENCH_DATA" in
    mixed) RANDOM_MB=$((BENCH_MB / 2)) ;;
    random) RANDOM_MB=$BENCH_MB ;;
    compressible) RANDOM_MB=0 ;;
esac
COMP_BYTES=$((TOTAL_BYTES - RANDOM_MB * 1048576))
# Compressible data: half copies of the static busybox binary (compresses like
# executables and libraries), half `seq` output (like text, sources, logs).
# Written in files of at most 16 MiB, as in a real tree.
# shellcheck disable=SC2016  # expanded by the container's shell
WRITE_SCRIPT='
set -e
bb=busybox
mkdir -p /bench/random /bench/bin /bench/text
left=$1; i=0
while [ "$left" -gt 0 ]; do
    n=16; [ "$left" -lt 16 ] && n=$left
    $bb dd if=/dev/urandom of=/bench/random/r-$i bs=1048576 count=$n 2>/dev/null
    left=$((left - n)); i=$((i + 1))
done
size=$($bb stat -c %s /bin/busybox)
copies=$(($2 / 2 / size)); i=0
while [ "$i" -lt "$copies" ]; do $bb cp /bin/busybox /bench/bin/busybox-$i; i=$((i + 1)); done
left=$(($2 - copies * size)); i=0
while [ "$left" -gt 0 ]; do
    n=16777216; [ "$left" -lt "$n" ] && n=$left
    $bb seq $((i * 2000000 + 1)) 999999999999 | $bb head -c "$n" >/bench/text/t-$i
    left=$((left - n)); i=$((i + 1))
done
$bb sync
for d in random bin text; do
    echo "$d $($bb find /bench/$d -type f | $bb wc -l) $($bb du -sk /bench/$d | $bb cut -f1)"
done
'
t0=$(now_us)
WRITTEN="$(as_bench podman exec "$CTR" /bin/busybox sh -c "$WRITE_SCRIPT" sh "$RANDOM_MB" "$COMP_BYTES")"
t1=$(now_us)
declare -A DATA_FILES=() DATA_KB=()
while read -r kind files kb; do
    DATA_FILES[$kind]=$files DATA_KB[$kind]=$kb
done <<<"$WRITTEN"
info "written in $(secs "$t0" "$t1") s (BENCH_DATA=$BENCH_DATA):"
info "  /bench/random  $(mib "${DATA_KB[random]}") MiB in ${DATA_FILES[random]} files from /dev/urandom"
info "  /bench/bin     $(mib "${DATA_KB[bin]}") MiB in ${DATA_FILES[bin]} copies of /bin/busybox"
info "  /bench/text    $(mib "${DATA_KB[text]}") MiB in ${DATA_FILES[text]} files of seq output"

# --- the agent --------------------------------------------------------------------------
say "agent: $WORK/bin/baicommit-agent on unix://$SOCK"
cat >"$WORK/agent.toml" <<EOF
# scripts/bench.sh
node_name = "bench"
state_dir = "$WORK/state"
run_dir = "$WORK/run"
save_path = "$SAVE_ROOT/{user}"
save_roots = ["$SAVE_ROOT"]
idle_exit = "0s"
transient_service_idle = "600s"
EOF
sed 's/^/    /' "$WORK/agent.toml"
"$WORK/bin/baicommit-agent" --config "$WORK/agent.toml" --listen "unix://$SOCK" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
up=""
for _ in $(seq 100); do
    kill -0 "$AGENT_PID" 2>/dev/null || die "the agent exited: $(cat "$WORK/agent.log")"
    if [[ -S "$SOCK" ]] && "$WORK/bin/baicommit" --agent "unix://$SOCK" version >/dev/null 2>&1; then
        up=1
        break
    fi
    sleep 0.1
done
[[ -n "$up" ]] || die "the agent did not answer on $SOCK within 10 s"
info "agent pid $AGENT_PID answers"

say "warm-up: baicommit sessions (starts the agent's transient podman service for $BENCH_USER)"
t0=$(now_us)
cli sessions | sed 's/^/    /'
t1=$(now_us)
info "took $(secs "$t0" "$t1") s; freezes below are timed with this service already running"
SERVICE_PIDS="$(service_pids | paste -sd' ')"
info "transient podman service pids: ${SERVICE_PIDS:-none found}"
read_mem "$AGENT_PID"
AGENT_IDLE_KB=$RSS_KB
info "agent RSS after warm-up: $(mib "$AGENT_IDLE_KB") MiB"

# --- the runs ---------------------------------------------------------------------------
declare -A WALLS=() SIZES=()
D_COMMIT=() D_EXPORT=() D_TOTAL=() D_SIZE=() D_READ=() D_UNCOMP=() D_WARN=()
PEAK_AGENT=0 PEAK_HELPER=0 PEAK_BOTH=0 PEAK_HELPER_HWM=0 PEAK_SERVICE=0 HELPERS_SEEN=0 PEAK_HELPER_ANON=0

# Pipelines a-c as the bench user would type them: bash -c NAIVE PIPELINE CONTAINER IMAGE OUT
# shellcheck disable=SC2016  # expanded by that bash
NAIVE='set -euo pipefail
podman commit -q "$2" "$3" >/dev/null
case "$1" in
    a) podman save "$3" | gzip >"$4" ;;
    b) podman save "$3" | pigz >"$4" ;;
    c) podman save "$3" >/dev/null ;;
esac'

# One pipeline of a-c, timed; then its image and output are removed.
naive() {
    local p="$1" img="$IMG_PREFIX-$1:latest" out="$SCRATCH/$1.tar.gz" t0 t1
    sync
    t0=$(now_us)
    as_bench bash -c "$NAIVE" bash "$p" "$CTR" "$img" "$out" || die "pipeline $p failed"
    t1=$(now_us)
    WALLS[$p]+="$(secs "$t0" "$t1") "
    if [[ -f "$out" ]]; then
        SIZES[$p]+="$(stat -c %s "$out") "
        rm -f "$out"
    fi
    as_bench podman rmi "$img" >/dev/null
}

# Pipeline d, with the memory sampler running.
freeze() {
    local rep="$1" task="$WORK/out/task-d-$1.json" mem="$WORK/out/mem-d-$1.txt" t0 t1 rc=0 state
    : >"$mem"
    sync
    sample_mem "$AGENT_PID" "$mem" "$SERVICE_PIDS" &
    SAMPLER_PID=$!
    t0=$(now_us)
    cli commit --wait --json "$CTR" >"$task" 2>"$WORK/out/task-d-$rep.stderr" || rc=$?
    t1=$(now_us)
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
    state="$(jq -r '.state // empty' "$task" 2>/dev/null || true)"
    if ((rc != 0)) || [[ "$state" != succeeded ]]; then
        cat "$task" "$WORK/out/task-d-$rep.stderr" >&2
        die "baicommit commit exited $rc, task state '${state:-unknown}'"
    fi
    WALLS[d]+="$(secs "$t0" "$t1") "
    SIZES[d]+="$(jq -r '.archive.size // 0' "$task") "
    D_COMMIT+=("$(jq -r '.durations.commit // 0 | . * 1000 | round / 1000' "$task")")
    D_EXPORT+=("$(jq -r '.durations.export // 0 | . * 1000 | round / 1000' "$task")")
    D_TOTAL+=("$(jq -r '.durations.total // 0 | . * 1000 | round / 1000' "$task")")
    D_SIZE+=("$(jq -r '.archive.size // 0' "$task")")
    D_UNCOMP+=("$(jq -r '.archive.uncompressed // 0' "$task")")
    D_READ+=("$(jq -r '.progress.bytes_read // 0' "$task")")
    D_WARN+=("$(jq -r '(.warnings // []) | join("; ")' "$task")")
    # Peaks over this run's samples (kB), merged into the peaks over all runs.
    local peaks
    peaks="$(awk '{ if ($2 > a) a = $2; if ($4 > h) h = $4; if ($2 + $4 > b) b = $2 + $4
                    if ($6 > hh) hh = $6; if ($7 > s) s = $7; if ($5 > n) n = $5; if ($8 > ha) ha = $8 }
                  END { printf "%d %d %d %d %d %d %d %d", a, h, b, hh, s, n, ha, NR }' "$mem")"
    local a h b hh s n ha samples
    read -r a h b hh s n ha samples <<<"$peaks"
    ((a > PEAK_AGENT)) && PEAK_AGENT=$a
    ((h > PEAK_HELPER)) && PEAK_HELPER=$h
    ((b > PEAK_BOTH)) && PEAK_BOTH=$b
    ((hh > PEAK_HELPER_HWM)) && PEAK_HELPER_HWM=$hh
    ((s > PEAK_SERVICE)) && PEAK_SERVICE=$s
    ((n > HELPERS_SEEN)) && HELPERS_SEEN=$n
    ((ha > PEAK_HELPER_ANON)) && PEAK_HELPER_ANON=$ha
    # The archive and its sidecar: the next run starts from the same state.
    rm -f "$SAVE_DIR"/*.tar.gz "$SAVE_DIR"/*.json
    info "   (agent: commit ${D_COMMIT[-1]} s, export ${D_EXPORT[-1]} s, total ${D_TOTAL[-1]} s;" \
        "$samples memory samples, $n helper processes at once)"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
for ((rep = 1; rep <= BENCH_REPS; rep++)); do
    say "run $rep/$BENCH_REPS (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    for p in "${PIPELINES[@]}"; do
        if [[ "$p" == d ]]; then
            freeze "$rep"
        else
            naive "$p"
        fi
        info "$p: $(awk '{ print $NF }' <<<"${WALLS[$p]}") s  (${TITLE[$p]})"
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
read_mem "$AGENT_PID"
AGENT_HWM_KB=$HWM_KB
AGENT_END_KB=$RSS_KB

# --- report -----------------------------------------------------------------------------
declare -A MED=() MSIZE=()
for p in "${PIPELINES[@]}"; do
    # shellcheck disable=SC2086  # space-separated lists
    MED[$p]="$(median ${WALLS[$p]})"
    # shellcheck disable=SC2086
    if [[ -n "${SIZES[$p]:-}" ]]; then MSIZE[$p]="$(median ${SIZES[$p]} | cut -d. -f1)"; else MSIZE[$p]=""; fi
done
MED_D_TOTAL="$(median "${D_TOTAL[@]}")"
MED_D_COMMIT="$(median "${D_COMMIT[@]}")"
MED_D_EXPORT="$(median "${D_EXPORT[@]}")"
UNCOMP="${D_UNCOMP[-1]}"

say "results: $BENCH_MB MiB ($BENCH_DATA), $BENCH_REPS run(s), median wall seconds; $(nproc) cores, load average $LOAD_BEFORE before, $LOAD_AFTER after"
printf '    %-3s %-34s %9s %9s %9s %12s\n' "" "pipeline" "wall s" "a / x" "x / c" "output MiB"
for p in "${PIPELINES[@]}"; do
    size="-"
    [[ -n "${MSIZE[$p]}" ]] && size="$(mib_bytes "${MSIZE[$p]}")"
    printf '    %-3s %-34s %9s %9s %9s %12s\n' "$p" "${TITLE[$p]}" "${MED[$p]}" \
        "$(ratio "${MED[a]}" "${MED[$p]}")" "$(ratio "${MED[$p]}" "${MED[c]}")" "$size"
done
info "a / x: how many times faster than the naive gzip pipeline; x / c: how many times slower than commit + save > /dev/null"
info "d as the agent timed it: commit $MED_D_COMMIT s + export $MED_D_EXPORT s, total $MED_D_TOTAL s" \
    "(the CLI polls every 0.2 s, so its wall time can be up to that much longer)"
info "d read $(mib_bytes "${D_READ[-1]}") MiB of docker-archive (uncompressed $(mib_bytes "$UNCOMP") MiB), wrote $(mib_bytes "${D_SIZE[-1]}") MiB"
[[ -n "${D_WARN[-1]}" ]] && info "d warnings: ${D_WARN[-1]}"

say "memory while (d) ran (sampled every ${SAMPLE_EVERY}s, peak over all runs)"
info "agent RSS peak                      $(mib "$PEAK_AGENT") MiB (after warm-up $(mib "$AGENT_IDLE_KB") MiB, at the end $(mib "$AGENT_END_KB") MiB)"
info "export helpers RSS peak (summed)    $(mib "$PEAK_HELPER") MiB ($HELPERS_SEEN processes at once; anonymous memory $(mib "$PEAK_HELPER_ANON") MiB, the rest is the mapped binary)"
info "agent + helpers, peak of the sum    $(mib "$PEAK_BOTH") MiB"
info "agent VmHWM (whole life)            $(mib "$AGENT_HWM_KB") MiB"
info "helpers' VmHWM, summed              $(mib "$PEAK_HELPER_HWM") MiB"
info "agent VmHWM + helpers' VmHWM        $(mib $((AGENT_HWM_KB + PEAK_HELPER_HWM))) MiB (upper bound)"
info "user's podman service RSS peak      $(mib "$PEAK_SERVICE") MiB (not ours: the user's Podman, not counted)"

SPEEDUP="$(ratio "${MED[a]}" "${MED[d]}")"
SPEEDUP_AGENT="$(ratio "${MED[a]}" "$MED_D_TOTAL")"
OVER_C="$(ratio "${MED[d]}" "${MED[c]}")"
OVER_C_AGENT="$(ratio "$MED_D_TOTAL" "${MED[c]}")"
BOTH_MIB="$(mib "$PEAK_BOTH")"
GOAL1="$(holds "$SPEEDUP" ">=" 2)"
GOAL2="$(holds "$OVER_C" "<=" 1.3)"
GOAL3="$(holds "$BOTH_MIB" "<" 100)"

say "goals"
info "freeze at least 2x faster than podman commit + save | gzip: $GOAL1: ${SPEEDUP}x (${MED[a]} s vs ${MED[d]} s; ${SPEEDUP_AGENT}x by the agent's own total)"
info "freeze within 1.3x of podman commit + save > /dev/null:    $GOAL2: ${OVER_C}x (${MED[d]} s vs ${MED[c]} s; ${OVER_C_AGENT}x by the agent's own total)"
info "agent + helper memory peak below 100 MiB:                 $GOAL3: $BOTH_MIB MiB (upper bound from VmHWM: $(mib $((AGENT_HWM_KB + PEAK_HELPER_HWM))) MiB)"

# Agent log lines above INFO: worth a look even when every freeze succeeded.
LOG_ISSUES="$(grep -cE 'level=(WARN|ERROR)|"level":"(WARN|ERROR)"' "$WORK/agent.log" || true)"
info "agent log: ${LOG_ISSUES:-0} WARN/ERROR line(s) in $WORK/agent.log"

# --- JSON ------------------------------------------------------------------------------
json_nums() { printf '%s\n' "$@" | jq -s 'map(tonumber)'; }
pipelines_json="[]"
for p in "${PIPELINES[@]}"; do
    # shellcheck disable=SC2086
    pipelines_json="$(jq --arg id "$p" --arg title "${TITLE[$p]}" \
        --argjson walls "$(json_nums ${WALLS[$p]})" --argjson median "${MED[$p]}" \
        --argjson sizes "$(if [[ -n "${SIZES[$p]:-}" ]]; then json_nums ${SIZES[$p]}; else echo '[]'; fi)" \
        --arg vs_a "$(ratio "${MED[a]}" "${MED[$p]}")" --arg vs_c "$(ratio "${MED[$p]}" "${MED[c]}")" \
        '. + [{id: $id, pipeline: $title, wall_seconds: $walls, median_seconds: $median,
               output_bytes: $sizes, speedup_vs_a: ($vs_a | tonumber? // null),
               ratio_vs_c: ($vs_c | tonumber? // null)}]' <<<"$pipelines_json")"
done
jq -n \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg host "$(hostname)" --argjson cores "$(nproc)" \
    --arg commit "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --arg podman "$(podman --version | awk '{ print $NF }')" \
    --arg load_before "$LOAD_BEFORE" --arg load_after "$LOAD_AFTER" \
    --argjson mb "$BENCH_MB" --arg data "$BENCH_DATA" --argjson reps "$BENCH_REPS" \
    --argjson kb_random "${DATA_KB[random]}" --argjson kb_bin "${DATA_KB[bin]}" --argjson kb_text "${DATA_KB[text]}" \
    --argjson pipelines "$pipelines_json" \
    --argjson d_commit "$(json_nums "${D_COMMIT[@]}")" --argjson d_export "$(json_nums "${D_EXPORT[@]}")" \
    --argjson d_total "$(json_nums "${D_TOTAL[@]}")" --argjson d_size "$(json_nums "${D_SIZE[@]}")" \
    --argjson d_read "$(json_nums "${D_READ[@]}")" --argjson d_uncomp "$(json_nums "${D_UNCOMP[@]}")" \
    --argjson agent_idle "$AGENT_IDLE_KB" --argjson agent_peak "$PEAK_AGENT" --argjson agent_hwm "$AGENT_HWM_KB" \
    --argjson helper_peak "$PEAK_HELPER" --argjson helper_anon "$PEAK_HELPER_ANON" --argjson helper_hwm "$PEAK_HELPER_HWM" --argjson both_peak "$PEAK_BOTH" \
    --argjson service_peak "$PEAK_SERVICE" --argjson helpers "$HELPERS_SEEN" \
    --arg speedup "$SPEEDUP" --arg over_c "$OVER_C" \
    --arg g1 "$GOAL1" --arg g2 "$GOAL2" --arg g3 "$GOAL3" --argjson log_issues "${LOG_ISSUES:-0}" \
    '{
      date: $date, host: $host, cores: $cores, commit: $commit, podman: $podman,
      load_average: {before: $load_before, after: $load_after},
      data: {mib: $mb, kind: $data, written_kib: {random: $kb_random, busybox_copies: $kb_bin, seq_text: $kb_text}},
      reps: $reps, warm_service: true,
      pipelines: $pipelines,
      baicommit: {durations: {commit: $d_commit, export: $d_export, total: $d_total},
                  archive_bytes: $d_size, bytes_read: $d_read, uncompressed_bytes: $d_uncomp},
      memory_kib: {agent_after_warmup_rss: $agent_idle, agent_peak_rss: $agent_peak, agent_vmhwm: $agent_hwm,
                   helpers_peak_rss: $helper_peak, helpers_peak_rss_anon: $helper_anon, helpers_vmhwm_sum: $helper_hwm, helper_processes: $helpers,
                   agent_plus_helpers_peak_rss: $both_peak, podman_service_peak_rss: $service_peak},
      goals: {
        faster_than_gzip_2x: {met: ($g1 == "met"), speedup: ($speedup | tonumber? // null)},
        within_1_3x_of_save_devnull: {met: ($g2 == "met"), ratio: ($over_c | tonumber? // null)},
        memory_below_100mib: {met: ($g3 == "met"), peak_mib: ($both_peak / 1024)}
      },
      agent_log_warn_error_lines: $log_issues
    }' >"$RESULTS"

say "markdown"
echo
echo "| pipeline | wall s (median of $BENCH_REPS) | a / x | x / c | output MiB |"
echo "| --- | ---: | ---: | ---: | ---: |"
for p in "${PIPELINES[@]}"; do
    size="-"
    [[ -n "${MSIZE[$p]}" ]] && size="$(mib_bytes "${MSIZE[$p]}")"
    echo "| ($p) ${TITLE[$p]//|/\\|} | ${MED[$p]} | $(ratio "${MED[a]}" "${MED[$p]}") | $(ratio "${MED[$p]}" "${MED[c]}") | $size |"
done
echo
echo "Memory: agent + export helpers peak $BOTH_MIB MiB (agent $(mib "$PEAK_AGENT"), helpers $(mib "$PEAK_HELPER")); user's podman service $(mib "$PEAK_SERVICE") MiB."

say "results written to $RESULTS"
