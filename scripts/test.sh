#!/usr/bin/env bash
# The one test command (README, .ci/run and the GitHub workflow all call this):
# installs what the suite needs (scripts/setup/*.sh: Debian packages, a Python venv, Rust
# components), then checks formatting, runs clippy with -D warnings and runs every test.
#
# Tests that need root or network namespaces (the host firewall) run when this runs as root;
# with CI=true they fail instead of skipping when a prerequisite is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

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

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked "$@"
