#!/usr/bin/env bash
# The baicommit demo on this one machine, no manager: user bcdemo runs a rootless Podman
# session, writes a file into it, and freezes it through a socket-activated agent into
# /srv/baicommit/bcdemo/*.tar.gz; the archive is then loaded and run again. Run as root.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="/usr/local/go/bin:$PATH"

DEMO_USER=bcdemo
CONTAINER=demo-session
BASE_IMAGE=localhost/busybox:latest
SOCK_DIR=/run/baicommit
SOCK="$SOCK_DIR/agent.sock"
SAVE_ROOT=/srv/baicommit
STATE_DIR=/var/lib/baicommit-demo
MESSAGE=frozen-by-baicommit

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\ndemo: FAILED: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root"

as_demo() {
    (cd "/home/$DEMO_USER" && runuser -u "$DEMO_USER" -- env -i HOME="/home/$DEMO_USER" \
        USER="$DEMO_USER" LOGNAME="$DEMO_USER" PATH=/usr/bin:/bin "$@")
}

say "machine set-up"
bash scripts/setup.sh
bash scripts/setup.sh user "$DEMO_USER"
command -v jq >/dev/null || die "jq missing (scripts/setup.sh installs it)"

say "build"
make --no-print-directory build

WORK="$(mktemp -d /tmp/baicommit-demo.XXXXXX)"
chmod 0755 "$WORK"
# The CLI runs as bcdemo: give it a copy it can surely execute.
install -m 0755 bin/baicommit "$WORK/baicommit"
AGENT_PID=""
LOADED_IMAGE=""

cleanup() {
    local rc=$?
    set +e
    if [[ -n "$AGENT_PID" ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill "$AGENT_PID"
        for _ in $(seq 50); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$AGENT_PID" 2>/dev/null && kill -9 "$AGENT_PID"
    fi
    [[ -n "$AGENT_PID" ]] && rm -f "$SOCK"
    as_demo podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1
    [[ -n "$LOADED_IMAGE" ]] && as_demo podman rmi "$LOADED_IMAGE" >/dev/null 2>&1
    if ((rc != 0)) && [[ -s "$WORK/agent.log" ]]; then
        printf '\n--- agent log (%s) ---\n' "$WORK/agent.log" >&2
        tail -n 40 "$WORK/agent.log" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT

say "session: $DEMO_USER starts '$CONTAINER' and writes /root/hello.txt into it"
as_demo podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || true
as_demo podman run -d --name "$CONTAINER" --network=none "$BASE_IMAGE" sleep 3600 >/dev/null
as_demo podman exec "$CONTAINER" sh -c "mkdir -p /root && echo $MESSAGE > /root/hello.txt"
as_demo podman ps --filter "name=^${CONTAINER}\$" --format '{{.Names}}  {{.Image}}  {{.Status}}'

say "agent: socket-activated on $SOCK, archives under $SAVE_ROOT"
mkdir -p "$SAVE_ROOT"
chmod 1777 "$SAVE_ROOT"
cat >"$WORK/agent.toml" <<EOF
# demo agent configuration (scripts/demo.sh)
state_dir = "$STATE_DIR"
save_path = "$SAVE_ROOT/{user}"
save_roots = ["$SAVE_ROOT"]
idle_exit = "20s"
EOF
sed 's/^/    /' "$WORK/agent.toml"
mkdir -p "$SOCK_DIR"
chmod 0755 "$SOCK_DIR"
if [[ -S "$SOCK" ]]; then
    if ss -xl | grep -qF "$SOCK"; then
        die "something already listens on $SOCK (an installed baicommit-agent.socket?); stop it first"
    fi
    rm -f "$SOCK"   # left over by an earlier run
fi
systemd-socket-activate -l "$SOCK" --fdname=agent \
    "$REPO/bin/baicommit-agent" --config "$WORK/agent.toml" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 100); do
    [[ -S "$SOCK" ]] && break
    kill -0 "$AGENT_PID" 2>/dev/null || die "systemd-socket-activate exited: $(cat "$WORK/agent.log")"
    sleep 0.1
done
[[ -S "$SOCK" ]] || die "$SOCK did not appear"
# systemd-socket-activate creates the socket with root's umask; the unit uses SocketMode=0666.
chmod 0666 "$SOCK"
ls -l "$SOCK"

say "freeze: $DEMO_USER runs: baicommit --agent unix://$SOCK commit --wait --json $CONTAINER"
set +e
as_demo "$WORK/baicommit" --agent "unix://$SOCK" commit --wait --json "$CONTAINER" >"$WORK/task.json"
rc=$?
set -e
state="$(jq -r '.state // empty' "$WORK/task.json" 2>/dev/null || true)"
if ((rc != 0)) || [[ "$state" != succeeded ]]; then
    echo "--- baicommit exited $rc; its output:" >&2
    cat "$WORK/task.json" >&2
    err="$(jq -r '.error // empty' "$WORK/task.json" 2>/dev/null || true)"
    die "the freeze did not succeed (state '${state:-unknown}')${err:+: $err}"
fi
jq . "$WORK/task.json"
ARCHIVE="$(jq -r '.archive.path // empty' "$WORK/task.json")"
SIDECAR="$(jq -r '.archive.sidecar // empty' "$WORK/task.json")"
IMAGE="$(jq -r '.image // empty' "$WORK/task.json")"
[[ -n "$ARCHIVE" ]] || die "the task names no archive path"
[[ -n "$SIDECAR" ]] || SIDECAR="${ARCHIVE%.tar.gz}.json"
[[ -n "$IMAGE" ]] || die "the task names no image"

say "archive"
ls -l "$ARCHIVE" "$SIDECAR"
jq . "$SIDECAR"

say "restore: $DEMO_USER checks the archive against its sidecar, loads it and reads the file back"
# baicommit restore refuses an archive changed since the freeze, and decompresses on the fly:
# Podman 4.3 (Debian 12) cannot read a compressed docker-archive with `podman load -i`.
as_demo "$WORK/baicommit" restore "$ARCHIVE"
LOADED_IMAGE="$IMAGE"
got="$(as_demo podman run --rm --network=none "$IMAGE" cat /root/hello.txt)"
echo "/root/hello.txt in $IMAGE: $got"
[[ "$got" == "$MESSAGE" ]] || die "expected '$MESSAGE' in the restored image, got '$got'"

say "SUCCESS: $CONTAINER was frozen into $ARCHIVE and restored with its changes"
