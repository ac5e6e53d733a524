#!/usr/bin/env bash
# The one test command (README, .ci/run and the GitHub workflow all call this):
# installs what the suite needs (scripts/setup/*.sh: Debian packages, a Python venv, Rust
# components; never the benchmark tools, which only scripts/bench.sh installs), then checks
# formatting, builds every target with Clippy's lints and -D warnings, runs every test, runs
# `rangekeeper providers test` against every plugin (scripts/plugins-conformance.sh), builds
# and tests the binary with no optional provider and with each alone, and runs every fuzz
# target briefly. It ends with how long each step took.
#
# The workspace's crates are compiled by scripts/clippy-rustc (clippy-driver with -D warnings)
# as RUSTC_WORKSPACE_WRAPPER: one build lints them and makes the test binaries, where
# `cargo clippy` then `cargo test` would compile every dependency twice (metadata, then code).
# Clippy's verdict is the same: clippy-driver is what `cargo clippy` runs.
#
# Without root, the tests that need it (network namespaces, kernel firewall rules) are left
# out, and this says which and why; with CI=true nothing is left out, so a missing
# prerequisite fails the run. `scripts/test.sh --left-out` only prints what would be left out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Each step's wall time, printed as a table when the script ends (also when a step fails).
step_name=""
step_start=$SECONDS
step_times=()
end_step() {
    [ -n "$step_name" ] && step_times+=("$(printf '%6d s  %s' $((SECONDS - step_start)) "$step_name")")
    step_name=""
}
step() {
    end_step
    step_name="$*"
    step_start=$SECONDS
    printf '\n==> %s\n' "$*" >&2
}
report_times() {
    local status=$?
    end_step
    if [ "${#step_times[@]}" -gt 0 ]; then
        printf '\n==> time per step (%d s in all)\n' "$SECONDS" >&2
        printf '%s\n' "${step_times[@]}" >&2
    fi
    return "$status"
}

# Tests that need root, as `cargo test` name filters, each with why.
ROOT_TESTS=(
    "netns::|the hostfw provider's real-kernel tests (network namespaces, nftables and iptables rules)"
    "cli::reconcile_enforces_a_kube_restrict_ip_config_unchanged|runs the binary's hostfw reconcile inside a network namespace"
    "leases::hostfw::|grant/revoke/leases through the binary on a hostfw target, with real connections between network namespaces"
    "container::as_root_|runs the binary in a chroot of the container's root filesystem, and builds and runs the image with podman"
)

left_out=()
if [ "$(id -u)" -ne 0 ] && [ "${CI:-}" != true ]; then
    left_out=("${ROOT_TESTS[@]}")
fi

report_left_out() {
    if [ "${#left_out[@]}" -eq 0 ]; then
        echo "test: nothing left out" >&2
        return
    fi
    echo "test: not root, so these tests are left out (run as root, or with CI=true to make them fail instead):" >&2
    for t in "${left_out[@]}"; do
        echo "  ${t%%|*}  (${t#*|})" >&2
    done
}

if [ "${1:-}" = --left-out ]; then
    report_left_out
    exit 0
fi

trap report_times EXIT

step "rust components"
if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt >&2
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy >&2
fi

for setup in scripts/setup/*.sh; do
    [ -e "$setup" ] || continue
    step "setup: $setup"
    bash "$setup"
done

# A moto_server found on PATH by the setup step is the one the tests use.
if [ -z "${RANGEKEEPER_MOTO_SERVER:-}" ] && [ ! -x .venv/bin/moto_server ] &&
    moto="$(command -v moto_server 2>/dev/null)"; then
    export RANGEKEEPER_MOTO_SERVER="$moto"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

# Every cargo command below (and in the scripts it calls) compiles the workspace's crates
# through Clippy, so they share one set of artifacts.
export RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/clippy-rustc"

step "build every target, with Clippy's lints (-D warnings)"
cargo test --workspace --locked --all-targets --no-run

step "cargo test"
skips=()
for t in "${left_out[@]}"; do
    skips+=(--skip "${t%%|*}")
done
report_left_out
if [ "${#skips[@]}" -eq 0 ]; then
    cargo test --workspace --locked "$@"
else
    cargo test --workspace --locked "$@" -- "${skips[@]}"
    report_left_out
fi

# `rangekeeper providers test` against every plugin: the example plugins and each crate under
# plugins/ (with its plugins/NAME/conformance.yaml; see the script).
step "plugin conformance"
bash scripts/plugins-conformance.sh

# The GitHub Action (action/, plain Node): its tests against a simulated runner and a fake
# rangekeeper, then end to end with the binary just built, once that binary has `grant`.
step "GitHub Action: node --test"
# (built as the steps above built it: the same artifacts, nothing compiled again)
cargo test --locked --workspace --no-run
node --test action/test/action.test.js
if target/debug/rangekeeper grant --help >/dev/null 2>&1; then
    RANGEKEEPER_BIN="$PWD/target/debug/rangekeeper" node --test action/test/e2e-real-binary.test.js
else
    echo "test: target/debug/rangekeeper has no \`grant\` command, so action/test/e2e-real-binary.test.js is not run" >&2
fi

# The binary with no optional provider and with each one alone: it must build, pass Clippy
# and pass its tests (tests that need a provider are gated on its feature), so a newcomer who
# wants only the `file` provider builds without the cloud SDKs. Only the binary's own crate is
# compiled again for each: test-support names the features the workspace turns on in its
# dependencies, so they are the main build's (see its Cargo.toml).
for features in "" aks eks gke hostfw kubernetes; do
    step "features: [${features:-none}]"
    flags=(-p rangekeeper --locked --no-default-features)
    [ -n "$features" ] && flags+=(--features "$features")
    cargo test "${flags[@]}" --all-targets --no-run
    # Left to the main suite above, which runs them once: the container image, and the
    # external-ips tests against the real kube-apiserver (about half a minute each time).
    # Neither depends on the provider features: the code under a feature is the provider
    # catalogue (src/registry.rs, src/lib.rs) and reconcile's leader election, and the
    # external-ips declarations name no provider (tests/external_ips.rs has no `provider:`).
    cargo test "${flags[@]}" "$@" -- "${skips[@]}" --skip container:: --skip external_ips::
done

# Every fuzz target briefly (fuzz/ is a workspace of its own: formatting, lints, a few
# seconds of fuzzing each); scripts/fuzz.sh without --smoke runs the long campaign.
step "fuzz targets (smoke)"
bash scripts/fuzz.sh --smoke
