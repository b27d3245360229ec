# Sourced by the benchmarks: start_agent NAME writes $WORK/agent.toml (archives
# below $SAVE_ROOT), starts $WORK/bin/baicommit-agent on unix://$SOCK, sets
# AGENT_PID and returns once the agent answers. The caller defines die.
# stop_podman_services USER stops the Podman services that ran for USER.
start_agent() {
    cat >"$WORK/agent.toml" <<TOML
# scripts/$1
node_name = "bench"
state_dir = "$WORK/state"
run_dir = "$WORK/run"
save_path = "$SAVE_ROOT/{user}"
save_roots = ["$SAVE_ROOT"]
idle_exit = "0s"
transient_service_idle = "900s"
TOML
    "$WORK/bin/baicommit-agent" --config "$WORK/agent.toml" --listen "unix://$SOCK" >"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    for _ in $(seq 100); do
        kill -0 "$AGENT_PID" 2>/dev/null || die "the agent exited: $(cat "$WORK/agent.log")"
        "$WORK/bin/baicommit" --agent "unix://$SOCK" version >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "the agent did not answer on unix://$SOCK within 10 s: $(cat "$WORK/agent.log")"
}

stop_podman_services() {
    pkill -u "$1" -f "unix://$WORK/run/" 2>/dev/null
    # The agent's transient services get their socket as a file descriptor, so their
    # command line does not name it; the bench users run nothing else.
    pkill -u "$1" -f "podman system service" 2>/dev/null
    return 0
}
