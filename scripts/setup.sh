#!/usr/bin/env bash
# Idempotent machine set-up for baicommit's tests and demo. Run as root on a fresh
# Debian/Ubuntu machine; running it again changes nothing that is already in place.
#
#   scripts/setup.sh                  everything: packages, Go check, /dev/net/tun,
#                                     containers.conf, test users bcalice + bcbob with
#                                     their base image
#   scripts/setup.sh user USER        create USER (with subuid/subgid) and its base image
#   scripts/setup.sh base-image USER  build localhost/busybox:latest in USER's rootless Podman
#   scripts/setup.sh cluster          start munged and the one-node Slurm cluster
#   scripts/setup.sh podman5          build Podman 5.8.2 into /opt/podman5/bin (about a
#                                     minute warm) and its test users
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="localhost/busybox:latest"
TEST_USERS=(bcalice bcbob)
# Users whose stores use the other storage drivers and Podman versions that freezes are
# tested on: USER:PODMAN:DRIVER (bcalice is Podman 4.3.1 with vfs).
STORE_USERS=(bcovl:4:overlay bcp5:5:vfs bcp5ovl:5:overlay bcfuse:4:fuse-overlayfs)
PODMAN5_VERSION=v5.8.2
PODMAN5_DIR=/opt/podman5
# The account baicommit-manager runs as in the tests (agents trust its MUNGE credentials).
MANAGER_USER=bcmanager
# The users of the scale simulation (test/scale/sim: they only make MUNGE credentials and
# own files on its simulated shared filesystem; no home, no shell, no Podman).
SIM_USERS=(bcsim01 bcsim02 bcsim03 bcsim04 bcsim05 bcsim06 bcsim07 bcsim08 bcsim09 bcsim10)
GO_MIN_MAJOR=1
GO_MIN_MINOR=26

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root"

# --- packages ---------------------------------------------------------------------
pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

ensure_packages() {
    local want=(podman runc uidmap slirp4netns fuse-overlayfs busybox-static pigz gcc make
                ca-certificates jq procps gzip munge libmunge-dev slurm-wlm docker-registry apache2-utils
                chromium fonts-dejavu-core attr libcap2-bin conmon libseccomp-dev libgpgme-dev)
    local missing=() p
    for p in "${want[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    # systemd: only its two tools are needed; do not reinstall it when they exist.
    if ! command -v systemd-socket-activate >/dev/null || ! command -v systemd-analyze >/dev/null; then
        missing+=(systemd)
    fi
    if ((${#missing[@]} == 0)); then
        log "packages: all present"
        return
    fi
    log "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    command -v systemd-socket-activate >/dev/null || die "systemd-socket-activate still missing"
    command -v systemd-analyze >/dev/null || die "systemd-analyze still missing"
}

# --- Go -----------------------------------------------------------------------------
ensure_go() {
    local go=""
    if [[ -x /usr/local/go/bin/go ]]; then
        go=/usr/local/go/bin/go
    elif command -v go >/dev/null; then
        go="$(command -v go)"
    fi
    [[ -n "$go" ]] || die "Go >= ${GO_MIN_MAJOR}.${GO_MIN_MINOR} not found (looked in /usr/local/go/bin and PATH); install it from https://go.dev/dl/"
    local v major minor
    v="$("$go" env GOVERSION 2>/dev/null || true)"   # e.g. go1.26.8
    [[ "$v" =~ ^go([0-9]+)\.([0-9]+) ]] || die "cannot read the version of $go ('$v')"
    major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
    if ((major < GO_MIN_MAJOR || (major == GO_MIN_MAJOR && minor < GO_MIN_MINOR))); then
        die "$go is $v; need Go >= ${GO_MIN_MAJOR}.${GO_MIN_MINOR}"
    fi
    log "go: $go ($v)"
}

# --- host tweaks ----------------------------------------------------------------------
ensure_tun() {
    if [[ -e /dev/net/tun ]]; then
        if [[ "$(stat -c %a /dev/net/tun)" != 666 ]]; then
            chmod 666 /dev/net/tun
            log "/dev/net/tun: chmod 666 (slirp4netns for rootless users)"
        fi
    else
        log "/dev/net/tun: absent (rootless containers need --network=none)"
    fi
}

ensure_containers_conf() {
    local dst=/etc/containers/containers.conf
    if [[ -e "$dst" ]]; then
        log "$dst: exists, left alone"
        grep -Eq '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"runc"' "$dst" ||
            log "WARNING: $dst does not set runtime = \"runc\"; crun refuses hybrid/v1 cgroups"
        return
    fi
    mkdir -p /etc/containers
    install -m 0644 "$REPO/containers.conf.example" "$dst"
    log "$dst: installed from containers.conf.example"
}

# --- MUNGE and a one-node Slurm cluster ---------------------------------------------------
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

ensure_munge() {
    if munge_ok; then
        log "munged: running"
        return
    fi
    [[ -s /etc/munge/munge.key ]] || die "/etc/munge/munge.key missing (reinstall munge, or mungekey -c)"
    mkdir -p /run/munge
    chown munge: /run/munge
    chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    local i
    for i in $(seq 50); do
        munge_ok && { log "munged: started"; return; }
        sleep 0.1
    done
    die "munged does not answer (munge -n | unmunge failed)"
}

# The cluster's single node is this host under its short name, so SLURMD_NODENAME,
# squeue's node list and the agent's default node name all agree.
SLURM_CONF=/etc/slurm/slurm.conf
SLURM_MARK="# baicommit test cluster (scripts/setup.sh)"
SLURM_EPILOG=/etc/slurm/epilog.sh

write_slurm_conf() {
    local node cpus mem
    node="$(hostname -s)"
    cpus="$(nproc)"
    mem="$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.8 }' /proc/meminfo)"
    cat >"$SLURM_CONF" <<CONF
$SLURM_MARK
ClusterName=baicommit
SlurmctldHost=localhost
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
Epilog=$SLURM_EPILOG
PrologEpilogTimeout=180
KillWait=10
NodeName=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
}

ensure_slurm() {
    if [[ -e "$SLURM_CONF" ]] && ! grep -qxF "$SLURM_MARK" "$SLURM_CONF"; then
        log "$SLURM_CONF: a site configuration, left alone"
    else
        write_slurm_conf
    fi
    mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    # Slurm runs the Epilog after every job: a missing one drains the node. Tests replace it.
    if [[ ! -e "$SLURM_EPILOG" ]]; then
        printf '#!/bin/sh\nexit 0\n' >"$SLURM_EPILOG"
        chmod 0755 "$SLURM_EPILOG"
    fi
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    local i node state
    node="$(hostname -s)"
    for i in $(seq 100); do
        state="$(sinfo -h -n "$node" -o %T 2>/dev/null || true)"
        case "$state" in
            idle*|mixed*|allocated*) log "slurm: node $node $state"; return ;;
            drain*|down*) scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.2
    done
    die "slurm: node $node is not idle (state '${state}'); see /var/log/slurm/"
}

# --- users ----------------------------------------------------------------------------
# Print the first id after every range in /etc/subuid and /etc/subgid (at least 100000).
next_subid() {
    awk -F: 'BEGIN { m = 100000 } NF >= 3 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ {
                 e = $2 + $3; if (e > m) m = e } END { printf "%d\n", m }' \
        /etc/subuid /etc/subgid 2>/dev/null
}

ensure_subids() {
    local user="$1" uid f start=""
    uid="$(id -u "$user")"
    for f in /etc/subuid /etc/subgid; do
        touch "$f"
        if grep -Eq "^(${user}|${uid}):" "$f"; then
            continue
        fi
        # One start for both files, past every range in either: same ids, no overlap.
        [[ -n "$start" ]] || start="$(next_subid)"
        echo "${user}:${start}:65536" >>"$f"
        log "$f: added ${user}:${start}:65536"
    done
}

ensure_user() {
    local user="$1"
    if id -u "$user" >/dev/null 2>&1; then
        log "user $user: exists"
    else
        useradd -m -s /bin/bash "$user"
        log "user $user: created"
    fi
    ensure_subids "$user"
}

# Run a command as USER in a clean environment, from USER's home directory; the
# Podman 5 users find /opt/podman5/bin first.
as_user() {
    local user="$1"; shift
    local home path=/usr/bin:/bin
    home="$(getent passwd "$user" | cut -d: -f6)"
    [[ -n "$home" && -d "$home" ]] || die "user $user has no home directory"
    [[ -e "$home/.config/baicommit-test-podman5" ]] && path="$PODMAN5_DIR/bin:$path"
    (cd "$home" && runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" \
        PATH="$path" PODMAN_IGNORE_CGROUPSV1_WARNING=1 "$@")
}

# The base image of every test: a static busybox, since no image can be pulled here.
# ENVIRONMENT.md's recipe, plus /root and /tmp (the demo writes /root/hello.txt; the
# image has no other directories) and root ownership in the tar (else the files are
# owned by the user's host uid inside the container). Other applets work through sh.
ensure_base_image() {
    local user="$1"
    id -u "$user" >/dev/null 2>&1 || die "no such user: $user"
    if as_user "$user" podman image exists "$BASE_IMAGE"; then
        log "user $user: $BASE_IMAGE exists"
        return
    fi
    [[ -x /bin/busybox ]] || die "/bin/busybox missing (apt-get install busybox-static)"
    # shellcheck disable=SC2016  # expanded by the user's shell
    as_user "$user" sh -ec '
        d="$(mktemp -d "$HOME/.baicommit-base.XXXXXX")"
        trap "rm -rf \"$d\"" EXIT
        mkdir -p "$d/r/bin" "$d/r/root" "$d/r/tmp"
        chmod 1777 "$d/r/tmp"
        cp /bin/busybox "$d/r/bin/"
        for c in sh ls cat echo sleep; do ln -s busybox "$d/r/bin/$c"; done
        tar -C "$d/r" --numeric-owner --owner=0 --group=0 -cf "$d/rootfs.tar" .
        podman import -q "$d/rootfs.tar" '"$BASE_IMAGE"' >/dev/null
    '
    as_user "$user" podman image exists "$BASE_IMAGE" || die "user $user: building $BASE_IMAGE failed"
    log "user $user: built $BASE_IMAGE from /bin/busybox"
}

# One rootless container run, so a broken runtime set-up shows here and not in a test.
smoke_test() {
    local user="$1" out
    if ! out="$(as_user "$user" podman run --rm --network=none "$BASE_IMAGE" echo ok 2>&1)" ||
        [[ "$out" != *ok ]]; then
        printf '%s\n' "$out" >&2
        die "rootless podman run as $user failed (check /etc/containers/containers.conf: runtime = \"runc\")"
    fi
    log "smoke test: podman run as $user: ok"
}

# The end-to-end tests name their containers e2e-*; a run that was killed leaves them
# behind, and a later run's Slurm epilog or session list would find them.
remove_leftover_sessions() {
    local user="$1" names
    names="$(as_user "$user" podman ps -a --filter name='^e2e-' --format '{{.Names}}' 2>/dev/null)" || return 0
    [[ -n "$names" ]] || return 0
    # shellcheck disable=SC2086 # one name per word
    as_user "$user" podman rm -f -t 0 $names >/dev/null 2>&1 || true
    log "user $user: removed $(wc -w <<<"$names") container(s) an earlier test run left"
}

# --- Podman 5 and the users of each storage driver -------------------------------------------
# Podman 5.8.2 from the Go module proxy's source (ENVIRONMENT.md): Debian 12 has 4.3.1 only.
ensure_podman5() {
    local bin="$PODMAN5_DIR/bin/podman" src="$PODMAN5_DIR/src"
    if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -qF "${PODMAN5_VERSION#v}"; then
        log "podman5: $("$bin" --version)"
        return
    fi
    log "podman5: building github.com/containers/podman/v5 $PODMAN5_VERSION into $bin (a few minutes cold)"
    mkdir -p "$src" "$PODMAN5_DIR/bin"
    local go=/usr/local/go/bin/go
    (
        cd "$src"
        [[ -f go.mod ]] || "$go" mod init baicommit-podman5 >/dev/null 2>&1
        "$go" get "github.com/containers/podman/v5/cmd/podman@$PODMAN5_VERSION" >/dev/null 2>&1 ||
            "$go" get "github.com/containers/podman/v5/cmd/podman@$PODMAN5_VERSION"
        "$go" build -tags 'containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper seccomp' \
            -o "$bin.new" github.com/containers/podman/v5/cmd/podman
    ) || die "podman5: the build failed"
    mv "$bin.new" "$bin"
    log "podman5: $("$bin" --version)"
}

# A user whose store uses DRIVER with Podman VERSION (4: Debian's, 5: /opt/podman5).
ensure_store_user() {
    local user="$1" version="$2" driver="$3" uid home conf
    ensure_user "$user"
    uid="$(id -u "$user")"
    home="$(getent passwd "$user" | cut -d: -f6)"
    mkdir -p "$home/.config/containers"
    if [[ "$version" == 5 ]]; then
        touch "$home/.config/baicommit-test-podman5"
    fi
    conf="$home/.config/containers/storage.conf"
    local want extra=""
    if [[ "$driver" == fuse-overlayfs ]]; then
        # The overlay driver through FUSE (what nodes without native rootless overlay use).
        driver=overlay
        extra='[storage.options.overlay]\nmount_program = "/usr/bin/fuse-overlayfs"\n'
    fi
    want="$(printf "[storage]\\ndriver = \"%s\"\\nrunroot = \"/tmp/podman-run-%s/containers\"\\ngraphroot = \"%s/.local/share/containers/storage\"\\n$extra" "$driver" "$uid" "$home")"
    if [[ ! -f "$conf" ]] || [[ "$(cat "$conf")" != "$want" ]]; then
        printf '%s\n' "$want" >"$conf"
        log "user $user: $driver storage, Podman $version"
    fi
    chown -R "$user:" "$home/.config"
    ensure_base_image "$user"
}

# --- main ---------------------------------------------------------------------------------
main_all() {
    ensure_packages
    ensure_go
    ensure_tun
    ensure_containers_conf
    ensure_munge
    ensure_slurm
    local u
    for u in "${TEST_USERS[@]}"; do
        ensure_user "$u"
    done
    for u in "${TEST_USERS[@]}"; do
        ensure_base_image "$u"
    done
    if ! id -u "$MANAGER_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$MANAGER_USER"
        log "user $MANAGER_USER: created (system account for baicommit-manager)"
    fi
    for u in "${SIM_USERS[@]}"; do
        if ! id -u "$u" >/dev/null 2>&1; then
            useradd --system --no-create-home --shell /usr/sbin/nologin "$u"
            log "user $u: created (for the scale simulation)"
        fi
    done
    smoke_test "${TEST_USERS[0]}"
    for u in "${TEST_USERS[@]}"; do
        remove_leftover_sessions "$u"
    done
    main_podman5
    log "done"
}

main_podman5() {
    ensure_podman5
    local spec user version driver
    for spec in "${STORE_USERS[@]}"; do
        IFS=: read -r user version driver <<<"$spec"
        ensure_store_user "$user" "$version" "$driver"
    done
    for spec in "${STORE_USERS[@]}"; do
        smoke_test "${spec%%:*}"
        remove_leftover_sessions "${spec%%:*}"
    done
}

case "${1:-all}" in
    all) main_all ;;
    user)
        [[ $# -eq 2 ]] || die "usage: $0 user USER"
        ensure_user "$2"
        ensure_base_image "$2"
        ;;
    cluster) ensure_munge; ensure_slurm ;;
    podman5) ensure_packages; ensure_go; main_podman5 ;;
    base-image)
        [[ $# -eq 2 ]] || die "usage: $0 base-image USER"
        ensure_base_image "$2"
        ;;
    -h|--help|help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (try: all, user USER, base-image USER, cluster)" ;;
esac
