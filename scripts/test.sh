#!/usr/bin/env bash
# THE test command of baicommit (README, .ci/run): machine set-up, build, go vet, unit
# tests, then the end-to-end tests in ./test/... (real rootless Podman; needs root).
# Runs from any directory; exits non-zero on the first failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="/usr/local/go/bin:$PATH"

STEP=""
T0=$SECONDS
step() {
    STEP="$1"
    printf '\n==> %s\n' "$STEP"
}
on_exit() {
    local rc=$?
    if ((rc != 0)); then
        printf '\ntest.sh: FAILED in step: %s (exit %d)\n' "$STEP" "$rc" >&2
    fi
}
trap on_exit EXIT

step "setup (scripts/setup.sh)"
bash scripts/setup.sh

# The build tags are the Makefile's, the one place that defines them.
TEST_TAGS="$(make -s print-TEST_TAGS)"

step "go.mod/go.sum consistency"
if ! out="$(go list -deps -test -tags "$TEST_TAGS" ./... 2>&1 >/dev/null)"; then
    if grep -qE 'missing go.sum entry|updates to go.mod needed|no required module provides' <<<"$out"; then
        printf '%s\n' "$out" | head -20
        echo "!!! go.mod/go.sum are incomplete: continuing with GOFLAGS=-mod=mod (fix with go mod tidy)"
        export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
    else
        printf '%s\n' "$out" >&2
        exit 1
    fi
else
    echo "ok"
fi

# cgo for the agent and the manager: os/user then asks libc (NSS: LDAP, sssd) for users
# and groups, as a site needs, and MUNGE credentials go through libmunge.
step "build (make build: bin/baicommit, bin/baicommit-agent, bin/baicommit-manager, bin/baicommit-epilog)"
make --no-print-directory build
ls -l bin/

step "go vet (make vet)"
make --no-print-directory vet

# Unit tests: every package outside ./test/ (the end-to-end tests run on their own below).
step "unit tests (make unit)"
make --no-print-directory unit

# The binaries just built, once per run: make e2e passes them as BAICOMMIT_BIN_DIR.
step "end-to-end tests (make e2e: ./test/e2e, real Podman, MUNGE, Slurm, registry, Chromium)"
mkdir -p artifacts
if ! make --no-print-directory e2e 2>&1 | tee artifacts/e2e.log; then
    # A failing test prints the daemons' logs after its own message, so a
    # reader of the last lines sees logs and not why: repeat the why here.
    printf '\ntest.sh: why the end-to-end tests failed (all of it in artifacts/e2e.log):\n'
    awk -f scripts/failures.awk artifacts/e2e.log | head -80 || true # head may close the pipe first
    exit 2
fi

printf '\ntest.sh: all passed in %ds\n' "$((SECONDS - T0))"
