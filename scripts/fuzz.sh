#!/usr/bin/env bash
# Build and run the fuzz targets in fuzz/ (cargo-fuzz layout). They are built on stable Rust
# the way `cargo fuzz build --sanitizer none` builds them: libFuzzer (crate libfuzzer-sys,
# compiled with the system C++ compiler) with LLVM's coverage instrumentation passed as
# ordinary -C flags, no nightly toolchain and no sanitizer (the code is `unsafe`-free; overflow
# checks and debug assertions stay on).
#
#   scripts/fuzz.sh --smoke [TARGET...]   formatting and lints of fuzz/, then each target for
#                                         FUZZ_SECONDS (default 5): what CI runs
#   scripts/fuzz.sh [TARGET...]           each target, one after another, for FUZZ_SECONDS
#                                         (default 600) or FUZZ_RUNS executions if set
#   scripts/fuzz.sh --list                the targets
#   scripts/fuzz.sh --build               only build
#
# The corpus grows in fuzz/corpus/TARGET/ (not committed), seeded from fuzz/seeds/TARGET/.
# A failing input is saved to fuzz/artifacts/TARGET/ and the run fails; reproduce it with
# `fuzz/target/<host>/release/TARGET fuzz/artifacts/TARGET/crash-...`. FUZZ_ARGS adds libFuzzer flags
# (e.g. FUZZ_ARGS=-jobs=2). Each run ends with one line: target, executions, seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

TARGETS=(cidr_parse lines set_algebra cover declaration kube_restrict_ip)

mode=long
case "${1:-}" in
--smoke) mode=smoke; shift ;;
--list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
--build) mode=build; shift ;;
esac
if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
fi

RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export RUSTFLAGS
# Not --locked: fuzz/Cargo.lock pins what it holds, and a dependency the main workspace adds
# is added to it (minimally) instead of failing the run until someone updates it by hand.
# A target dir of its own: these flags would otherwise rebuild the main workspace's artifacts.
export CARGO_TARGET_DIR="$PWD/target"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros (which run in the
# build and are not linked with libFuzzer), as cargo-fuzz does.
host="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="target/$host/release"

if [ "$mode" = smoke ]; then
    # This workspace is outside the main one's `cargo fmt --all` and Clippy run: its crate is
    # compiled through Clippy (-D warnings) by the build below, as scripts/test.sh does.
    echo "fuzz: cargo fmt --check; the build lints with Clippy (-D warnings)" >&2
    cargo fmt --check
    export RUSTC_WORKSPACE_WRAPPER="$PWD/../scripts/clippy-rustc"
else
    unset RUSTC_WORKSPACE_WRAPPER
fi

bins=()
for t in "${TARGETS[@]}"; do bins+=(--bin "$t"); done
echo "fuzz: building ${TARGETS[*]}" >&2
cargo build --release --target "$host" "${bins[@]}" >&2
[ "$mode" = build ] && exit 0

if [ "$mode" = smoke ]; then
    seconds="${FUZZ_SECONDS:-5}"
else
    seconds="${FUZZ_SECONDS:-600}"
fi

status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    limit=(-max_total_time="$seconds")
    if [ "$mode" = long ] && [ -n "${FUZZ_RUNS:-}" ]; then
        limit=(-runs="$FUZZ_RUNS")
    fi
    log="$(mktemp)"
    start=$(date +%s)
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    if "$bin_dir/$t" "${limit[@]}" -timeout=20 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" ${FUZZ_ARGS:-} \
        "corpus/$t" "${seeds[@]}" 2>"$log"; then
        result=ok
    else
        result=FAILED
        status=1
        tail -n 60 "$log" >&2
    fi
    end=$(date +%s)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    echo "fuzz: $t: ${runs:-?} executions in $((end - start)) s: $result"
    rm -f "$log"
done
exit "$status"
