#!/usr/bin/env bash
# Makes Python's `jsonschema` importable by the system python3, for the test that checks the
# plugin protocol's golden messages against docs/plugin-protocol.schema.json. Idempotent.
set -euo pipefail

if python3 -c "import jsonschema" >/dev/null 2>&1; then
    echo "45-jsonschema: python3 already has jsonschema" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update >&2
apt-get install -y python3-jsonschema >&2
