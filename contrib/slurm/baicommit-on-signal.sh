# baicommit-on-signal.sh: freeze a batch job's sessions before Slurm kills the job.
# Source it from a batch script submitted with a warning signal to the batch shell:
#
#   #!/bin/bash
#   #SBATCH --time=8:00:00
#   #SBATCH --signal=B:USR1@120            # USR1 to this script 120 s before the time limit
#   source /usr/local/share/baicommit/baicommit-on-signal.sh
#   baicommit-run --on-signal -d --rm --name work IMAGE sleep infinity
#   ...                                    # set the session up, start its work
#   baicommit_wait                         # wait here: the signal can only be handled while waiting
#
# On USR1 it freezes every container of this job labelled baicommit.freeze=on-signal
# (`baicommit commit --wait` through the node's agent, all at once), stops each one
# afterwards (a --rm session is removed by Podman then), and ends the script with 0 if
# every freeze succeeded, 1 otherwise. The node's epilog leaves on-signal sessions alone.
# Environment: BAICOMMIT (the CLI, default baicommit), BAICOMMIT_PODMAN (default podman),
# BAICOMMIT_AGENT (the agent's socket, read by the CLI).
# Test it by hand with: scancel --batch --signal=USR1 JOBID

BAICOMMIT="${BAICOMMIT:-baicommit}"
BAICOMMIT_PODMAN="${BAICOMMIT_PODMAN:-podman}"
_baicommit_waiter=""

# The job's sessions that wait for the signal, one name per line.
baicommit_sessions() {
    "$BAICOMMIT_PODMAN" ps -a --filter "label=baicommit.job=${SLURM_JOB_ID:?not in a Slurm job}" \
        --filter "label=baicommit.freeze=on-signal" --format '{{.Names}}'
}

# Freeze the job's on-signal sessions, then stop them. Returns 0 if every freeze succeeded.
baicommit_freeze_now() {
    local names name pid rc=0
    local -a pids=()
    names="$(baicommit_sessions)" || { echo "baicommit: cannot list this job's sessions" >&2; return 1; }
    if [ -z "$names" ]; then
        echo "baicommit: no session of job ${SLURM_JOB_ID} is labelled baicommit.freeze=on-signal" >&2
        return 0
    fi
    for name in $names; do
        echo "baicommit: freezing $name before job ${SLURM_JOB_ID} ends" >&2
        "$BAICOMMIT" commit --wait --job "$SLURM_JOB_ID" "$name" &
        pids+=("$!")
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || rc=1
    done
    for name in $names; do
        # Only after its freeze: stopping a --rm session removes it.
        "$BAICOMMIT_PODMAN" stop --ignore "$name" >/dev/null 2>&1 || true
    done
    return "$rc"
}

_baicommit_on_signal() {
    trap '' USR1
    [ -n "$_baicommit_waiter" ] && kill "$_baicommit_waiter" 2>/dev/null
    local rc=0
    baicommit_freeze_now || rc=1
    exit "$rc"
}
trap _baicommit_on_signal USR1

# Wait until the job's on-signal sessions have all ended, or the signal comes. Bash runs
# a trap only between commands, so the waiting happens in the background.
baicommit_wait() {
    local names
    names="$(baicommit_sessions)"
    if [ -n "$names" ]; then
        # shellcheck disable=SC2086
        "$BAICOMMIT_PODMAN" wait $names >/dev/null 2>&1 &
    else
        sleep infinity &
    fi
    _baicommit_waiter=$!
    wait "$_baicommit_waiter"
}
