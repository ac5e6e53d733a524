#!/usr/bin/env bash
# What the exec-plugin protocol costs (issue 12): an in-sync `rangekeeper plan` of N targets
# of the built-in `file` provider, against the same provider served as a plugin
# (examples/plugins/file_plugin.rs: the built-in behind `serve()`), and against the Python
# example plugin. Prints the extra milliseconds per target and the ratio, in one run.
#
#   scripts/bench-plugin.sh              # N = 1 and 20 targets
#   TARGETS="1 50" RUNS=30 scripts/bench-plugin.sh
#
# Goal: under 5 ms extra per target through the protocol. Needs hyperfine
# (scripts/bench-tools.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCH_DIR:-$ROOT/target/bench/plugin}
RUNS=${RUNS:-20}
TARGETS=${TARGETS:-"1 20"}
mkdir -p "$OUT"
command -v hyperfine >/dev/null 2>&1 || bash scripts/bench-tools.sh
command -v hyperfine >/dev/null 2>&1 || { echo "bench-plugin: hyperfine is missing" >&2; exit 1; }

echo "== build (release)" >&2
# The file provider alone: no cloud SDK to build for a file-only benchmark.
cargo build --release -q -p rangekeeper --no-default-features --bin rangekeeper --example rangekeeper-provider-file-plugin
RK=$ROOT/target/release/rangekeeper
PLUGIN=$ROOT/target/release/examples/rangekeeper-provider-file-plugin
PYPLUGIN=$ROOT/examples/plugins/rangekeeper-provider-pyfile

# decl KIND N: a declaration of N targets, each a file of 3 ranges.
decl() {
    local kind=$1 n=$2 f="$OUT/$1-$2/rangekeeper.yaml"
    mkdir -p "$OUT/$kind-$n"
    echo "version: 1" >"$f"
    echo "targets:" >>"$f"
    for i in $(seq 1 "$n"); do
        echo "  t$i:" >>"$f"
        case $kind in
            builtin) echo "    provider: file" >>"$f"; echo "    path: t$i.conf" >>"$f" ;;
            rust) echo "    provider: file-plugin" >>"$f"; echo "    plugin: $PLUGIN" >>"$f"; echo "    path: t$i.conf" >>"$f" ;;
            python) echo "    provider: pyfile" >>"$f"; echo "    plugin: $PYPLUGIN" >>"$f"; echo "    path: t$i.json" >>"$f" ;;
        esac
        echo "    allow: [192.0.2.0/24, 198.51.100.$i/32, 203.0.113.0/25]" >>"$f"
    done
    (cd "$OUT/$kind-$n" && "$RK" apply --yes >/dev/null 2>&1)
    (cd "$OUT/$kind-$n" && "$RK" plan --detailed-exitcode >/dev/null 2>&1) || {
        echo "bench-plugin: $kind-$n is not in sync after apply" >&2
        exit 1
    }
    echo "$OUT/$kind-$n"
}

printf '%-8s %-7s %10s %10s %12s %8s\n' targets via "built-in" plugin "extra/target" ratio
for n in $TARGETS; do
    b=$(decl builtin "$n")
    for kind in rust python; do
        p=$(decl "$kind" "$n")
        hyperfine -N -w 3 -r "$RUNS" --export-json "$OUT/$kind-$n.json" \
            -n builtin "$RK plan -f $b/rangekeeper.yaml" \
            -n plugin "$RK plan -f $p/rangekeeper.yaml" >/dev/null
        python3 - "$OUT/$kind-$n.json" "$n" "$kind" <<'PY'
import json, sys
r = {x["command"]: x["mean"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
n = int(sys.argv[2])
b, p = r["builtin"], r["plugin"]
print(f"{n:<8} {sys.argv[3]:<7} {b:8.2f}ms {p:8.2f}ms {(p - b) / n:10.2f}ms {p / b:7.2f}x")
PY
    done
done
