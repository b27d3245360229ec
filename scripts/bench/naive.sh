#!/usr/bin/env bash
# One of the pipelines people use by hand, as the bench user types it:
#   naive.sh naive|save CONTAINER IMAGE OUT
#     naive  podman commit + podman save | gzip          (one thread, default level)
#     save   podman commit + podman save > /dev/null     (no compression, nothing written)
# Prints {"output_bytes": N} last, for the bench's report.
set -euo pipefail
pipeline="$1" ctr="$2" img="$3" out="$4"
podman commit -q "$ctr" "$img" >/dev/null
case "$pipeline" in
    naive) podman save "$img" | gzip >"$out" ;;
    save) podman save "$img" >/dev/null ;;
    *) echo "naive.sh: unknown pipeline $pipeline" >&2; exit 2 ;;
esac
size=0
[[ -f "$out" ]] && size="$(stat -c %s "$out")"
printf '{"output_bytes": %d}\n' "$size"
