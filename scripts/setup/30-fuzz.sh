#!/usr/bin/env bash
# Installs what the fuzz targets' build needs (scripts/fuzz.sh, run briefly by the test
# command): a C++ compiler for libFuzzer, which the crate libfuzzer-sys compiles. Idempotent:
# installs only what is missing; without root it says what to install.
set -euo pipefail

if command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1; then
    echo "30-fuzz: a C++ compiler is installed" >&2
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "30-fuzz: no C++ compiler and not root; install g++ (the fuzz targets need it)" >&2
    exit 0
fi

echo "30-fuzz: installing g++" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update >&2
apt-get install -y --no-install-recommends g++ >&2
