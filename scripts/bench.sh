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
# (scripts/bench-tools.sh, run first, installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCH_DIR:-$ROOT/target/bench}
RUNS=${RUNS:-15}
mkdir -p "$OUT"

bash scripts/bench-tools.sh
for tool in iprange hyperfine /usr/bin/time python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "bench: missing $tool (scripts/bench-tools.sh installs it as root)" >&2
        exit 1
    }
done

echo "== build (release)" >&2
cargo build --release -q -p rangekeeper-cidr --examples
EX=$ROOT/target/release/examples
if [ "${RK_BUILD_BIN:-1}" = 1 ]; then
    cargo build --release -q -p rangekeeper 2>/dev/null || echo "bench: rangekeeper binary did not build; using the example" >&2
fi
# The engine is measured twice when the binary exists: through `rangekeeper normalize`
# (what users run) and through the stand-in example (the library call alone), so a slow
# step in the binary's own plumbing shows up as the difference between the two.
LIB=("$EX/normalize")
if [ -x "$ROOT/target/release/rangekeeper" ] && "$ROOT/target/release/rangekeeper" normalize --help >/dev/null 2>&1; then
    RK=("$ROOT/target/release/rangekeeper" normalize)
    RK_NAME="rangekeeper normalize"
else
    RK=("${LIB[@]}")
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
"${LIB[@]}" -i "$OUT/v4-1m.txt" >"$OUT/v4.lib"
"${LIB[@]}" -i "$OUT/v6-200k.txt" >"$OUT/v6.lib"
for pair in "v4.rk v4.ipnet" "v4.rk v4.iprange" "v6.rk v6.ipnet" "v4.lib v4.rk" "v6.lib v6.rk"; do
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
RSS_LIB=$(rss "${LIB[@]}" -i "$OUT/v4-1m.txt")
RSS_IPR=$(rss iprange "$OUT/v4-1m.txt")
RSS_IPNET=$(rss "$EX/ipnet_baseline" "$OUT/v4-1m.txt")

echo "== timing ($RUNS runs each; hyperfine, no shell)" >&2
hf() {
    local name=$1
    shift
    hyperfine -N --style none --warmup 3 --runs "$RUNS" --export-json "$OUT/$name.json" "$@" >/dev/null 2>&1
}
hf v4 "${RK[*]} -i $OUT/v4-1m.txt" "iprange $OUT/v4-1m.txt" "$EX/ipnet_baseline $OUT/v4-1m.txt" "${LIB[*]} -i $OUT/v4-1m.txt"
hf v6 "${RK[*]} -i $OUT/v6-200k.txt" "$EX/ipnet_baseline $OUT/v6-200k.txt" "${LIB[*]} -i $OUT/v6-200k.txt"
hf cover "${RK[*]} --max-ranges 40 -i $OUT/github-actions.txt" "${LIB[*]} --max-ranges 40 -i $OUT/github-actions.txt"

# Start-up (issue 11): the binary's own cost on the shortest commands, beside /bin/true (the
# cost of starting any process here). `validate` reads a declaration with one AKS target of
# 200 ranges (AKS's limit) and does not touch the network.
BIN="$ROOT/target/release/rangekeeper"
if [ "${RK[0]}" = "$BIN" ]; then
    echo "== start-up ($RUNS runs each)" >&2
    python3 - "$OUT/aks-200.yaml" <<'GEN'
import sys
ranges = [f"20.{40 + i // 125}.{(i % 125) * 2}.0/24" for i in range(200)]  # none adjacent
with open(sys.argv[1], "w") as f:
    f.write("version: 1\nsets:\n  many:\n")
    f.writelines(f"    - {r}\n" for r in ranges)
    f.write("targets:\n  prod:\n    provider: aks\n"
            "    subscription: 00000000-0000-0000-0000-000000000000\n"
            "    resourceGroup: rg\n    cluster: aks\n    allow: [many]\n")
GEN
    "$BIN" -f "$OUT/aks-200.yaml" validate >/dev/null
    hyperfine -N --style none --warmup 20 --runs "$((RUNS * 10))" --export-json "$OUT/startup.json" \
        "/bin/true" "$BIN --version" "$BIN -f $OUT/aks-200.yaml validate" >/dev/null 2>&1
fi

python3 - "$OUT" "$RK_NAME" "$RSS_RK" "$RSS_IPR" "$RSS_IPNET" "$RSS_LIB" <<'PY'
import json, os, sys
out, rk = sys.argv[1], sys.argv[2]
rss_rk, rss_ipr, rss_ipnet, rss_lib = map(int, sys.argv[3:7])
def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return [(r["median"], r["min"], r["mean"]) for r in json.load(f)["results"]]
v4, v6, cover = load("v4"), load("v6"), load("cover")
same = rk == "examples/normalize"
ms = lambda s: f"{s * 1000:7.1f} ms"
print(f"engine: {rk}   (median / min / mean of each command)")
print("1,000,000 IPv4 /24-/32:")
for name, r in zip([rk, "iprange", "ipnet baseline", "library (example)"], v4):
    print(f"  {name:22} {ms(r[0])} {ms(r[1])} {ms(r[2])}")
print("200,000 IPv6 /40-/64:")
for name, r in zip([rk, "ipnet baseline", "library (example)"], v6):
    print(f"  {name:22} {ms(r[0])} {ms(r[1])} {ms(r[2])}")
print(f"GitHub Actions cover, K=40 (whole process): {rk} {ms(cover[0][0])}, library {ms(cover[1][0])}")
ok = True
def report(label, i4, i6, icov, rss):
    global ok
    checks = [
        ("IPv4 vs iprange (median)", v4[1][0] / v4[i4][0], 8.0),
        ("IPv4 vs ipnet (median)", v4[2][0] / v4[i4][0], 4.0),
        ("IPv6 vs ipnet (median)", v6[1][0] / v6[i6][0], 4.0),
    ]
    print(f"ratios for {label} (target):")
    for name, r, target in checks:
        good = r >= target
        ok &= good
        print(f"  {name:26} {r:6.2f}x  (>= {target}x)  {'PASS' if good else 'MISS'}")
    good = rss <= 32 * 1024
    ok &= good
    print(f"  peak RSS, IPv4 1M          {rss / 1024:6.1f} MB (<= 32 MB)  {'PASS' if good else 'MISS'}"
          f"   [iprange {rss_ipr / 1024:.1f} MB, ipnet {rss_ipnet / 1024:.1f} MB]")
    good = cover[icov][0] < 0.020
    ok &= good
    print(f"  cover K=40, whole process  {cover[icov][0] * 1000:6.1f} ms (< 20 ms)  {'PASS' if good else 'MISS'}")
report(rk, 0, 0, 0, rss_rk)
startup = os.path.join(out, "startup.json")
if not same and os.path.exists(startup):
    true, version, validate = load("startup")
    print("start-up (median; /bin/true is the cost of any process here):")
    print(f"  /bin/true                  {ms(true[0])}")
    for name, r, goal in [("--version", version, 0.001), ("validate, AKS 200 ranges", validate, 0.005)]:
        good = r[0] < goal
        ok &= good
        print(f"  {name:26} {ms(r[0])}  (< {goal * 1000:.0f} ms)  {'PASS' if good else 'MISS'}"
              f"   [{(r[0] - true[0]) * 1000:.2f} ms above /bin/true]")
if not same:
    report("library (examples/normalize)", 3, 2, 1, rss_lib)
print(f"load average: {open('/proc/loadavg').read().split()[:3]} on {os.cpu_count()} CPUs")
if not ok and os.environ.get("BENCH_STRICT") == "1":
    sys.exit(2)
PY
