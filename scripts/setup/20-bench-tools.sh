#!/usr/bin/env bash
# Tools for scripts/bench.sh (the CIDR engine's side-by-side speed comparison): FireHOL's
# `iprange` (the C tool the engine is measured against), `hyperfine` (timing) and GNU `time`
# (peak RSS). Idempotent: installs only what is missing.
set -euo pipefail

need=()
command -v iprange >/dev/null 2>&1 || need+=(iprange)
command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
[ -x /usr/bin/time ] || need+=(time)
if [ "${#need[@]}" -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
