#!/usr/bin/env bash
# `rangekeeper providers test` against every plugin of the workspace and every example plugin
# (scripts/test.sh runs it; it runs alone too). Exit 0 only if every suite passes.
#
# - Example plugins: each executable examples/plugins/rangekeeper-provider-NAME (the Python
#   example) and each Rust example built as rangekeeper-provider-NAME (examples/plugins/*.rs),
#   tested as provider NAME: on the target `conformance` of examples/plugins/NAME.conformance.yaml
#   when there is one (and through examples/plugins/NAME.conformance.sh, as below, when there
#   is one), else on a scratch target with no fields.
# - Plugin crates: every plugins/NAME/ is a workspace crate whose binary is
#   rangekeeper-provider-NAME (provider NAME). It must have plugins/NAME/conformance.yaml, a
#   declaration with a target `conformance` (and, optionally, a target `missing` that names a
#   target that does not exist, for `--missing-target`). The file is copied into a scratch
#   directory, so relative paths in it point there. When plugins/NAME/conformance.sh exists,
#   the test runs through it as `bash conformance.sh SCRATCH -- COMMAND...`: it starts what the
#   plugin talks to (HAProxy, moto_server) for SCRATCH/conformance.yaml (editing that copy if
#   it must, e.g. to fill in a port or an id), runs COMMAND with whatever environment it
#   needs, stops what it started, and exits with COMMAND's status, or with 77 when a
#   prerequisite is missing (counted as skipped; with CI=true a skip fails the run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# Built as `cargo test` builds them (every plugin crate has integration tests, so its binary is
# built, and so are the examples): the same feature unification as scripts/test.sh's build, so
# after it this compiles nothing. `cargo build --bins` leaves the dev-dependencies out, which
# unifies the dependencies' features differently and compiled much of the tree again.
step "build rangekeeper, the plugin crates and the example plugins"
cargo test --locked --workspace --no-run >&2

bin="${CARGO_TARGET_DIR:-target}/debug"
bin="$(cd "$bin" && pwd)"
export PATH="$bin:$bin/examples:$PWD/examples/plugins:$PATH"
rk="$bin/rangekeeper"

passed=()
failed=()
skipped=()

record() { # NAME STATUS
    case "$2" in
        0) passed+=("$1") ;;
        77) skipped+=("$1") ;;
        *) failed+=("$1") ;;
    esac
}

# Example plugins: scripts in examples/plugins and Rust examples built from it.
examples=()
for exe in examples/plugins/rangekeeper-provider-*; do
    [ -f "$exe" ] && [ -x "$exe" ] && examples+=("${exe##*/rangekeeper-provider-}")
done
for exe in "$bin"/examples/rangekeeper-provider-*; do
    case "$exe" in *.d) continue ;; esac
    [ -f "$exe" ] && [ -x "$exe" ] || continue
    name="${exe##*/rangekeeper-provider-}"
    [[ " ${examples[*]} " == *" $name "* ]] || examples+=("$name")
done
# run_suite NAME DECLARATION HOOK: `providers test NAME`, on a scratch target when DECLARATION
# is empty, else on its target `conformance` (copied into a scratch directory), through HOOK
# when it is not empty.
run_suite() {
    local name="$1" decl="$2" hook="$3" scratch status=0
    scratch="$(mktemp -d)"
    local cmd=("$rk" providers test "$name")
    if [ -n "$decl" ]; then
        cp "$decl" "$scratch/conformance.yaml"
        cmd+=(-f "$scratch/conformance.yaml" --target conformance)
        if grep -q '^  missing:' "$scratch/conformance.yaml"; then
            cmd+=(--missing-target missing)
        fi
    fi
    (
        cd "$scratch"
        if [ -n "$hook" ]; then
            bash "$hook" "$scratch" -- "${cmd[@]}"
        else
            "${cmd[@]}"
        fi
    ) || status=$?
    rm -rf "$scratch"
    record "$name" "$status"
}

for name in "${examples[@]}"; do
    step "providers test $name (example plugin)"
    decl=""
    hook=""
    [ -f "examples/plugins/$name.conformance.yaml" ] && decl="$PWD/examples/plugins/$name.conformance.yaml"
    [ -f "examples/plugins/$name.conformance.sh" ] && hook="$PWD/examples/plugins/$name.conformance.sh"
    run_suite "$name" "$decl" "$hook"
done

# Plugin crates.
for dir in plugins/*/; do
    dir="${dir%/}"
    [ -f "$dir/Cargo.toml" ] || continue
    name="${dir##*/}"
    step "providers test $name (plugins/$name)"
    if [ ! -f "$dir/conformance.yaml" ]; then
        echo "plugins-conformance: $dir has no conformance.yaml (a declaration with a target \`conformance\`)" >&2
        record "$name" 1
        continue
    fi
    if [ ! -x "$bin/rangekeeper-provider-$name" ]; then
        echo "plugins-conformance: $dir did not build a binary rangekeeper-provider-$name" >&2
        record "$name" 1
        continue
    fi
    hook=""
    [ -f "$dir/conformance.sh" ] && hook="$PWD/$dir/conformance.sh"
    run_suite "$name" "$PWD/$dir/conformance.yaml" "$hook"
done

step "plugin conformance"
echo "passed: ${passed[*]:-none}" >&2
[ "${#skipped[@]}" -eq 0 ] || echo "skipped (a prerequisite is missing): ${skipped[*]}" >&2
[ "${#failed[@]}" -eq 0 ] || echo "FAILED: ${failed[*]}" >&2
if [ "${#failed[@]}" -gt 0 ]; then
    exit 1
fi
if [ "${#skipped[@]}" -gt 0 ] && [ "${CI:-}" = true ]; then
    echo "plugins-conformance: CI=true, so a skipped plugin fails the run" >&2
    exit 1
fi
