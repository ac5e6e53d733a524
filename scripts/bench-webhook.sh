#!/usr/bin/env bash
# What `rangekeeper external-ips serve` costs per admission review (issue 14): wrk against the
# webhook and against a minimal reference handler on the same TLS and HTTP stack
# (examples/webhook_reference.rs, a fixed answer without reading the request), in one run, on
# loopback. Prints requests/s and p99 latency of both and their ratios.
#
#   scripts/bench-webhook.sh
#   DURATION=30s CONNECTIONS=32 THREADS=2 scripts/bench-webhook.sh
#
# Goal: p99 well under a millisecond at moderate load, and most of the reference's rate.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCH_DIR:-$ROOT/target/bench/webhook}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
mkdir -p "$OUT"

if ! command -v wrk >/dev/null 2>&1; then
    echo "== installing wrk (Debian package)" >&2
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2
    fi
fi
command -v openssl >/dev/null 2>&1 || { echo "bench-webhook: openssl is missing" >&2; exit 1; }

echo "== build (release)" >&2
cargo build --release -q -p rangekeeper --no-default-features --bin rangekeeper --example webhook-reference
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RK=$TARGET/release/rangekeeper
REF=$TARGET/release/examples/webhook-reference

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$OUT/tls.key" -out "$OUT/tls.crt" 2>/dev/null

# A review of a Service with two allowed external IPs (the full path: parse, check, answer).
cat >"$OUT/review.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Service"},"resource":{"group":"","version":"v1","resource":"services"},"namespace":"default","operation":"CREATE","userInfo":{"username":"admin","groups":["system:masters","system:authenticated"]},"object":{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},"spec":{"ports":[{"port":80,"protocol":"TCP","targetPort":8080}],"selector":{"app":"web"},"externalIPs":["10.20.0.5","10.20.0.6"]}},"oldObject":null,"dryRun":false}}]]
LUA

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

P1=$(free_port); P2=$(free_port)
"$RK" -q external-ips serve --allowed-external-ip-cidrs 10.20.0.0/16,2001:db8:20::/48 \
    --tls-cert-file "$OUT/tls.crt" --tls-private-key-file "$OUT/tls.key" --listen "127.0.0.1:$P1" &
PID1=$!
"$REF" "$OUT/tls.crt" "$OUT/tls.key" "127.0.0.1:$P2" &
PID2=$!
trap 'kill $PID1 $PID2 2>/dev/null || true' EXIT
wait_port "$P1" && wait_port "$P2" || { echo "bench-webhook: a server did not start" >&2; exit 1; }

# run PORT NAME: wrk's summary to $OUT/NAME.txt; prints "rps p99_ms".
run() {
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$OUT/review.lua" \
        "https://127.0.0.1:$1/validate-service" >"$OUT/$2.txt"
    grep -q "Non-2xx" "$OUT/$2.txt" && { echo "bench-webhook: $2 answered errors" >&2; cat "$OUT/$2.txt" >&2; exit 1; }
    local rps p99
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$OUT/$2.txt")
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' "$OUT/$2.txt")
    echo "$rps $p99"
}

echo "== warm-up" >&2
DURATION=2s run "$P1" warm-webhook >/dev/null
DURATION=2s run "$P2" warm-reference >/dev/null
echo "== wrk -t$THREADS -c$CONNECTIONS -d$DURATION (webhook, then reference)" >&2
read -r W_RPS W_P99 < <(run "$P1" webhook)
read -r R_RPS R_P99 < <(run "$P2" reference)

printf '%-22s %12s %10s\n' "" "requests/s" "p99 (ms)"
printf '%-22s %12.0f %10.3f\n' "rangekeeper webhook" "$W_RPS" "$W_P99"
printf '%-22s %12.0f %10.3f\n' "reference handler" "$R_RPS" "$R_P99"
awk -v w="$W_RPS" -v r="$R_RPS" -v wp="$W_P99" -v rp="$R_P99" 'BEGIN {
    printf "ratio: %.2f of the reference'"'"'s requests/s, p99 %.2fx the reference'"'"'s\n", w / r, (rp > 0 ? wp / rp : 0)
}'
