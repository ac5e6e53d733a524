#!/usr/bin/env bash
# `bash conformance.sh SCRATCH -- COMMAND...` (scripts/plugins-conformance.sh): starts a
# throw-away HAProxy on loopback whose stats socket (SCRATCH/admin.sock) and ACL file
# (SCRATCH/allow.acl) are the ones SCRATCH/conformance.yaml names, runs COMMAND, stops HAProxy
# and exits with COMMAND's status (77 when haproxy is not installed).
set -euo pipefail
scratch="$1"
shift
[ "${1:-}" = -- ] && shift

haproxy="${RANGEKEEPER_HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}"
if [ ! -x "$haproxy" ]; then
    echo "conformance(haproxy): haproxy is not installed (scripts/setup/55-haproxy.sh)" >&2
    exit 77
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
: >"$scratch/allow.acl"
cat >"$scratch/haproxy.cfg" <<CFG
global
    stats socket $scratch/admin.sock mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:$port
    tcp-request connection reject if !{ src -f $scratch/allow.acl }
    default_backend be
backend be
    server s1 127.0.0.1:9
CFG

"$haproxy" -db -f "$scratch/haproxy.cfg" >"$scratch/haproxy.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT

for _ in $(seq 150); do
    [ -S "$scratch/admin.sock" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "conformance(haproxy): haproxy exited at start:" >&2
        cat "$scratch/haproxy.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ ! -S "$scratch/admin.sock" ]; then
    echo "conformance(haproxy): no stats socket after 15s:" >&2
    cat "$scratch/haproxy.log" >&2
    exit 1
fi

status=0
"$@" || status=$?
exit "$status"
