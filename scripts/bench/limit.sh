#!/usr/bin/env bash
# The limit proxy of a freeze, as the bench user: read the session's changed files
# once through the container and compress them as fast as the cores allow.
#   limit.sh CONTAINER PATH OUT
# Prints {"output_bytes": N} last.
set -euo pipefail
ctr="$1" path="$2" out="$3"
podman exec "$ctr" busybox tar cf - "$path" | pigz -1 >"$out"
printf '{"output_bytes": %d}\n' "$(stat -c %s "$out")"
