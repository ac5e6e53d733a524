#!/usr/bin/env bash
# Tools for scripts/bench.sh only (the CIDR engine's side-by-side speed comparison):
# FireHOL's `iprange` (the C tool normalize is measured against), `hyperfine` (timing) and
# GNU `time` (peak RSS). Idempotent: installs only what is missing. Run by scripts/bench.sh,
# never by the test command (scripts/test.sh), which needs none of them; scripts/bench.sh
# refuses to run without them.
set -euo pipefail

need=()
command -v iprange >/dev/null 2>&1 || need+=(iprange)
command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
[ -x /usr/bin/time ] || need+=(time)
if [ "${#need[@]}" -eq 0 ]; then
    echo "bench-tools: iprange, hyperfine and time are installed" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "bench-tools: not root; not installing ${need[*]} (only scripts/bench.sh needs them)" >&2
        exit 0
    fi
fi
echo "bench-tools: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq >&2 &&
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >&2; }; then
    echo "bench-tools: could not install ${need[*]} (only scripts/bench.sh needs them)" >&2
fi
