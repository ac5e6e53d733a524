#!/usr/bin/env bash
# Node.js for the GitHub Action's tests (action/test, run with node's own test runner; the
# action itself runs on the runner's Node 20 and has no npm dependencies). Uses the `node`
# on PATH when it is 18 or newer, else installs Debian's nodejs. Idempotent.
set -euo pipefail

major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if command -v node >/dev/null 2>&1 && [ "$(major)" -ge 18 ]; then
    echo "70-node: node $(node --version) at $(command -v node)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update >&2
apt-get install -y --no-install-recommends nodejs >&2
if ! command -v node >/dev/null 2>&1 || [ "$(major)" -lt 18 ]; then
    echo "70-node: node 18 or newer is needed for the action's tests (node --test); found: $(node --version 2>/dev/null || echo none)" >&2
    exit 1
fi
echo "70-node: installed node $(node --version)" >&2
