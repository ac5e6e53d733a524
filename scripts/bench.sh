#!/usr/bin/env bash
# Whole-process, side-by-side benchmark of `normalize` (issue 6): generates the seeded inputs,
# builds release binaries, checks that rangekeeper, FireHOL `iprange` and the `ipnet`
# baseline print the same aggregate, measures wall time with hyperfine and peak RSS with GNU
# time, and prints the ratios against the targets.
#
#   scripts/bench.sh            # full run (about a minute)
#   RUNS=30 scripts/bench.sh    # more runs per command
#   BENCH_STRICT=1 ...          # exit non-zero when a speed/memory target is missed
#
# Uses `target/release/rangekeeper normalize` when that binary builds, else the stand-in
# `cidr/examples/normalize.rs` (same library call). Needs iprange, hyperfine and /usr/bin/time
# (scripts/setup/20-bench-tools.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCH_DIR:-$ROOT/target/bench}
RUNS=${RUNS:-15}
mkdir -p "$OUT"

for tool in iprange hyperfine /usr/bin/time python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "bench: missing $tool (run scripts/setup/20-bench-tools.sh)" >&2
        exit 1
    }
done

echo "== build (release)" >&2
cargo build --release -q -p rangekeeper-cidr --examples
EX=$ROOT/target/release/examples
if [ "${RK_BUILD_BIN:-1}" = 1 ]; then
    cargo build --release -q -p rangekeeper 2>/dev/null || echo "bench: rangekeeper binary did not build; using the example" >&2
fi
if [ -x "$ROOT/target/release/rangekeeper" ] && "$ROOT/target/release/rangekeeper" normalize --help >/dev/null 2>&1; then
    RK=("$ROOT/target/release/rangekeeper" normalize)
    RK_NAME="rangekeeper normalize"
else
    RK=("$EX/normalize")
    RK_NAME="examples/normalize"
fi
echo "== engine under test: $RK_NAME" >&2

echo "== inputs (seeded)" >&2
[ -s "$OUT/v4-1m.txt" ] || "$EX/gen_cidrs" v4 1000000 42 >"$OUT/v4-1m.txt"
[ -s "$OUT/v6-200k.txt" ] || "$EX/gen_cidrs" v6 200000 43 >"$OUT/v6-200k.txt"
cp cidr/tests/data/github-actions.txt "$OUT/github-actions.txt"
ls -l "$OUT"/v4-1m.txt "$OUT"/v6-200k.txt >&2

echo "== outputs agree" >&2
fail=0
"${RK[@]}" -i "$OUT/v4-1m.txt" >"$OUT/v4.rk"
"$EX/ipnet_baseline" "$OUT/v4-1m.txt" >"$OUT/v4.ipnet"
iprange "$OUT/v4-1m.txt" | awk '/\// {print; next} {print $0 "/32"}' >"$OUT/v4.iprange"
"${RK[@]}" -i "$OUT/v6-200k.txt" >"$OUT/v6.rk"
"$EX/ipnet_baseline" "$OUT/v6-200k.txt" >"$OUT/v6.ipnet"
for pair in "v4.rk v4.ipnet" "v4.rk v4.iprange" "v6.rk v6.ipnet"; do
    set -- $pair
    if cmp -s "$OUT/$1" "$OUT/$2"; then
        echo "  $1 == $2 ($(wc -l <"$OUT/$1") prefixes)" >&2
    else
        echo "  MISMATCH: $1 != $2" >&2
        fail=1
    fi
done
[ "$fail" = 0 ] || exit 1

echo "== peak RSS" >&2
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
RSS_RK=$(rss "${RK[@]}" -i "$OUT/v4-1m.txt")
RSS_IPR=$(rss iprange "$OUT/v4-1m.txt")
RSS_IPNET=$(rss "$EX/ipnet_baseline" "$OUT/v4-1m.txt")

echo "== timing ($RUNS runs each; hyperfine, no shell)" >&2
hf() {
    local name=$1
    shift
    hyperfine -N --style none --warmup 3 --runs "$RUNS" --export-json "$OUT/$name.json" "$@" >/dev/null 2>&1
}
hf v4 "${RK[*]} -i $OUT/v4-1m.txt" "iprange $OUT/v4-1m.txt" "$EX/ipnet_baseline $OUT/v4-1m.txt"
hf v6 "${RK[*]} -i $OUT/v6-200k.txt" "$EX/ipnet_baseline $OUT/v6-200k.txt"
hf cover "${RK[*]} --max-ranges 40 -i $OUT/github-actions.txt"

python3 - "$OUT" "$RK_NAME" "$RSS_RK" "$RSS_IPR" "$RSS_IPNET" <<'PY'
import json, os, sys
out, rk, rss_rk, rss_ipr, rss_ipnet = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return [(r["median"], r["min"], r["mean"]) for r in json.load(f)["results"]]
v4, v6, cover = load("v4"), load("v6"), load("cover")
ms = lambda s: f"{s * 1000:7.1f} ms"
print(f"engine: {rk}   (median / min / mean of each command)")
print("1,000,000 IPv4 /24-/32:")
for name, r in zip(["rangekeeper", "iprange", "ipnet baseline"], v4):
    print(f"  {name:15} {ms(r[0])} {ms(r[1])} {ms(r[2])}")
print("200,000 IPv6 /40-/64:")
for name, r in zip(["rangekeeper", "ipnet baseline"], v6):
    print(f"  {name:15} {ms(r[0])} {ms(r[1])} {ms(r[2])}")
print(f"GitHub Actions cover, K=40 (whole process): {ms(cover[0][0])} {ms(cover[0][1])}")
checks = [
    ("IPv4 vs iprange (median)", v4[1][0] / v4[0][0], 8.0),
    ("IPv4 vs ipnet (median)", v4[2][0] / v4[0][0], 4.0),
    ("IPv6 vs ipnet (median)", v6[1][0] / v6[0][0], 4.0),
]
ok = True
print("ratios (target):")
for name, r, target in checks:
    good = r >= target
    ok &= good
    print(f"  {name:26} {r:6.2f}x  (>= {target}x)  {'PASS' if good else 'MISS'}")
good = rss_rk <= 32 * 1024
ok &= good
print(f"  peak RSS, IPv4 1M          {rss_rk / 1024:6.1f} MB (<= 32 MB)  {'PASS' if good else 'MISS'}"
      f"   [iprange {rss_ipr / 1024:.1f} MB, ipnet {rss_ipnet / 1024:.1f} MB]")
good = cover[0][0] < 0.020
ok &= good
print(f"  cover K=40, whole process  {cover[0][0] * 1000:6.1f} ms (< 20 ms)  {'PASS' if good else 'MISS'}")
print(f"load average: {open('/proc/loadavg').read().split()[:3]} on {os.cpu_count()} CPUs")
if not ok and os.environ.get("BENCH_STRICT") == "1":
    sys.exit(2)
PY
