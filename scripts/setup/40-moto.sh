#!/usr/bin/env bash
# Installs moto's server (a local emulator of the AWS EKS API) into <repo>/.venv for the EKS
# provider's integration tests. Idempotent: does nothing when a moto_server is already there,
# in the venv, named by RANGEKEEPER_MOTO_SERVER, or on PATH (scripts/test.sh then points the
# tests at that one).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${RANGEKEEPER_VENV:-$repo/.venv}"

if [ -n "${RANGEKEEPER_MOTO_SERVER:-}" ] && [ -x "$RANGEKEEPER_MOTO_SERVER" ]; then
    echo "40-moto: using RANGEKEEPER_MOTO_SERVER=$RANGEKEEPER_MOTO_SERVER" >&2
    exit 0
fi
if [ -x "$venv/bin/moto_server" ]; then
    echo "40-moto: $venv/bin/moto_server already installed" >&2
    exit 0
fi
if on_path="$(command -v moto_server 2>/dev/null)"; then
    echo "40-moto: moto_server already on PATH ($on_path); not installing" >&2
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        # Debian splits venv support into its own package.
        echo "40-moto: python3 -m venv failed; installing python3-venv" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update >&2
        apt-get install -y python3-venv >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    echo "40-moto: created $venv" >&2
fi

echo "40-moto: installing moto[server] into $venv" >&2
"$venv/bin/pip" install --disable-pip-version-check --quiet 'moto[server]>=5,<6' >&2
"$venv/bin/moto_server" --help >/dev/null
echo "40-moto: installed $venv/bin/moto_server" >&2
