#!/usr/bin/env bash
# baicommit layer store benchmark: what a freeze costs when the base is large and the
# change small, as an archive and into the layer store. A benchmark, not a test: it
# reports numbers and says whether the goals are met, never fails because of one. As root:
#
#   bash scripts/bench-store.sh                  (or: make bench-store)
#   BENCH_BASE_MB=2048 BENCH_CHANGE_MB=10 BENCH_REPS=3 bash scripts/bench-store.sh
#
# Knobs (environment):
#   BENCH_BASE_MB    MiB of the base image, 90% /dev/urandom (default 2048)
#   BENCH_CHANGE_MB  MiB a session changes (default 10, random)
#   BENCH_REPS       repetitions; the tables show medians (default 1)
#   BENCH_TMPDIR     where the temporary directory (and the save location) goes (default /var/tmp)
#
# A user (bcbenchst: native rootless overlay, Podman 4.3.1) has a base image of
# BENCH_BASE_MB (built once and kept: localhost/bench-store-base) and a session from it
# that changed BENCH_CHANGE_MB. Each repetition freezes, through a private agent:
#   a  the session as an archive (--format archive)
#   b  the session into an empty layer store (--format store): the base is written once
#   c  a session started from b's image (restored from the store, untimed) that changed
#      BENCH_CHANGE_MB, into the store: the base layers and b's layer are found there
#   d  the first session again after another BENCH_CHANGE_MB change, into the store: its
#      layer holds both changes
# and reports times and the bytes each wrote (from the task), against the goals: c at
# most 10% of a's time and about BENCH_CHANGE_MB written; b no slower than a. The save
# location is on the node's disk (BENCH_TMPDIR): a shared filesystem is slower still.
set -euo pipefail
export LC_ALL=C

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="/usr/local/go/bin:$PATH"

BENCH_BASE_MB="${BENCH_BASE_MB:-2048}"
BENCH_CHANGE_MB="${BENCH_CHANGE_MB:-10}"
BENCH_REPS="${BENCH_REPS:-1}"
BENCH_TMPDIR="${BENCH_TMPDIR:-/var/tmp}"
U=bcbenchst
BASE=localhost/bench-store-base:${BENCH_BASE_MB}m

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nbench-store: ERROR: %s\n' "$*" >&2; exit 1; }
. "$REPO/scripts/bench/agent.sh"

[[ $(id -u) -eq 0 ]] || die "run as root (the agent is a root daemon)"
for v in BENCH_BASE_MB BENCH_CHANGE_MB BENCH_REPS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] && ((${!v} >= 1)) || die "$v must be a positive integer (got '${!v}')"
done

as_user() { (cd / && runuser -u "$U" -- env -i HOME="/home/$U" USER="$U" LOGNAME="$U" PATH=/usr/local/bin:/usr/bin:/bin "$@"); }
argv() { printf '%s\n' "$@" | jq -R . | jq -cs .; }
as_cmd() { argv runuser -u "$U" -- env -i HOME="/home/$U" USER="$U" LOGNAME="$U" PATH=/usr/local/bin:/usr/bin:/bin "$@"; }

say "machine set-up (scripts/setup.sh, user $U on native overlay)"
bash scripts/setup.sh | sed 's/^/    /'
bash scripts/setup.sh user "$U" | sed 's/^/    /'
uid="$(id -u "$U")"
mkdir -p "/home/$U/.config/containers"
printf '[storage]\ndriver = "overlay"\nrunroot = "/tmp/podman-run-%s/containers"\ngraphroot = "/home/%s/.local/share/containers/storage"\n' \
    "$uid" "$U" >"/home/$U/.config/containers/storage.conf"
chown -R "$U:" "/home/$U/.config"
if [[ "$(as_user podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null || true)" != overlay ]]; then
    as_user podman system reset -f >/dev/null 2>&1 || true
fi
bash scripts/setup.sh base-image "$U" | sed 's/^/    /'

if ! as_user podman image exists "$BASE"; then
    say "base image $BASE: $BENCH_BASE_MB MiB, 90% random (built once, kept for the next runs)"
    rnd=$((BENCH_BASE_MB * 9 / 10))
    as_user podman rm -f -t 0 bench-store-mkbase >/dev/null 2>&1 || true
    as_user podman run -d --name bench-store-mkbase --network=none localhost/busybox:latest sleep 100000 >/dev/null
    as_user podman cp "$REPO/scripts/bench/write-data.sh" bench-store-mkbase:/write-data.sh
    as_user podman exec bench-store-mkbase /bin/busybox sh /write-data.sh "$rnd" $(((BENCH_BASE_MB - rnd) * 1048576)) | sed 's/^/    written: /'
    as_user podman exec bench-store-mkbase busybox rm /write-data.sh
    as_user podman commit -q bench-store-mkbase "$BASE" >/dev/null
    as_user podman rm -f -t 0 bench-store-mkbase >/dev/null
fi

WORK="$(mktemp -d "$BENCH_TMPDIR/baicommit-bench-store.XXXXXX")"
chmod 0755 "$WORK"
say "build (make build into $WORK/bin; go build of test/bench)"
make --no-print-directory build BIN="$WORK/bin"
go build -o "$WORK/bin/bench" ./test/bench
SOCK="$WORK/agent.sock"
SAVE_ROOT="$WORK/save"
STORE="$SAVE_ROOT/$U/store"
mkdir -p "$WORK/state" "$WORK/run" "$SAVE_ROOT"
chmod 1777 "$SAVE_ROOT"
CTR=bench-store-s1
CTR2=bench-store-s2
DAY2=localhost/bench-store-day2:latest

AGENT_PID=""
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    [[ -n "$AGENT_PID" ]] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
    stop_podman_services "$U"
    as_user podman rm -f --ignore -t 0 "$CTR" >/dev/null 2>&1
    as_user podman rm -f --ignore -t 0 "$CTR2" >/dev/null 2>&1
    as_user podman rmi -f "$DAY2" >/dev/null 2>&1
    rm -rf "${WORK:?}/bin" "$WORK/state" "$WORK/run" "$SOCK" "$SAVE_ROOT"
    if ((rc != 0)) && [[ -s "$WORK/agent.log" ]]; then
        printf '\n--- last lines of the agent log ---\n' >&2
        tail -n 30 "$WORK/agent.log" >&2
    fi
    echo
    echo "bench-store: kept in $WORK: bench-results.json (when finished), plan.json, agent.log"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "session: $U runs $CTR from $BASE and changes $BENCH_CHANGE_MB MiB"
for c in "$CTR" "$CTR2"; do as_user podman rm -f --ignore -t 0 "$c" >/dev/null; done
as_user podman run -d --name "$CTR" --network=none "$BASE" sleep 100000 >/dev/null
as_user podman exec "$CTR" busybox dd if=/dev/urandom of=/root/change-1 bs=1M count="$BENCH_CHANGE_MB" 2>/dev/null

say "agent: $WORK/bin/baicommit-agent on unix://$SOCK, save location $SAVE_ROOT"
start_agent bench-store.sh
as_user "$WORK/bin/baicommit" --agent "unix://$SOCK" sessions >/dev/null || die "the agent cannot reach $U's Podman"

# What happens between the pipelines, untimed, as the user: after b, the next day's
# session from b's image (restored from the store) changes as much; the first session
# changes again for d. After d, everything goes, the store too.
cat >"$WORK/bin/after-b.sh" <<SH
#!/bin/sh
set -e
img=\$(ls -td "$STORE"/images/*/ | head -n 1)
"$WORK/bin/baicommit" --agent "unix://$SOCK" restore --json --name "$DAY2" "\$img" >/dev/null
podman run -d --name "$CTR2" --network=none "$DAY2" sleep 100000 >/dev/null
podman exec "$CTR2" busybox dd if=/dev/urandom of=/root/change-2 bs=1M count=$BENCH_CHANGE_MB 2>/dev/null
podman exec "$CTR" busybox dd if=/dev/urandom of=/root/change-3 bs=1M count=$BENCH_CHANGE_MB 2>/dev/null
SH
cat >"$WORK/bin/after-d.sh" <<SH
#!/bin/sh
set -e
podman rm -f -t 0 "$CTR2" >/dev/null
podman rmi -f "$DAY2" >/dev/null
podman exec "$CTR" busybox rm /root/change-3
rm -rf "$STORE" "$SAVE_ROOT/$U"/*.tar.gz "$SAVE_ROOT/$U"/*.json
SH
chmod 0755 "$WORK/bin/after-b.sh" "$WORK/bin/after-d.sh"

freeze() { as_cmd "$WORK/bin/baicommit" --agent "unix://$SOCK" commit --wait --json --format "$1" "$2"; }
pipelines="$(jq -cn \
    --argjson a "$(freeze archive "$CTR")" --argjson b "$(freeze store "$CTR")" \
    --argjson c "$(freeze store "$CTR2")" --argjson d "$(freeze store "$CTR")" \
    --argjson after_a "$(as_cmd sh -c "rm -f '$SAVE_ROOT/$U'/*.tar.gz '$SAVE_ROOT/$U'/*.json")" \
    --argjson after_b "$(as_cmd "$WORK/bin/after-b.sh")" --argjson after_d "$(as_cmd "$WORK/bin/after-d.sh")" \
    '[{id: "a", title: "archive (--format archive)", argv: $a, after: $after_a, written: "archive.size"},
      {id: "b", title: "into an empty store (--format store)", argv: $b, after: $after_b, written: "store.written"},
      {id: "c", title: "into the store: a session from b'"'"'s image, changed again", argv: $c, written: "store.written"},
      {id: "d", title: "into the store: the first session after another change", argv: $d, after: $after_d, written: "store.written"}]')"
jq -n --arg title "a $BENCH_BASE_MB MiB base (90% random), sessions changing $BENCH_CHANGE_MB MiB, native overlay" --argjson reps "$BENCH_REPS" \
    --argjson pipelines "$pipelines" --argjson agent "$AGENT_PID" --arg match "$WORK/bin/baicommit-agent --config" \
    --argjson limit "$((BENCH_CHANGE_MB + 1))" --argjson dlimit "$((2 * BENCH_CHANGE_MB + 1))" \
    --arg podman "$(podman --version | awk '{ print $NF }')" --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --argjson base "$BENCH_BASE_MB" --argjson change "$BENCH_CHANGE_MB" \
    '{title: $title, reps: $reps, info: {base_mib: $base, change_mib: $change, podman: $podman, commit: $commit, driver: "overlay"},
      pipelines: $pipelines,
      processes: [{name: "agent", root: $agent, match: $match}, {name: "helpers", root: $agent, match: " as-owner "}],
      ratios: [{name: "store, first time / archive", num: "b", den: "a"},
               {name: "store, again / archive", num: "c", den: "a"},
               {name: "store, same session again / archive", num: "d", den: "a"}],
      goals: [{name: "c at most 10% of the archive'"'"'s time", of: "store, again / archive", op: "<=", limit: 0.1},
              {name: "b no slower than the archive", of: "store, first time / archive", op: "<=", limit: 1.0},
              {name: "c writes about the change plus metadata (MiB)", of: "written", pipeline: "c", op: "<=", limit: $limit},
              {name: "d writes both changes plus metadata (MiB)", of: "written", pipeline: "d", op: "<=", limit: $dlimit},
              {name: "agent + helpers below 100 MiB while b runs (MiB)", of: "memory:agent+helpers", pipeline: "b", op: "<", limit: 100}]}' >"$WORK/plan.json"

say "runs"
"$WORK/bin/bench" -plan "$WORK/plan.json" -out "$WORK/bench-results.json"
