#!/usr/bin/env bash
# Installs podman (and runc, which runs containers where crun cannot: a host with cgroups
# in hybrid mode) from Debian's packages, for the test that builds the Containerfile's image
# from scratch and runs the binary in it (tests/container.rs). Idempotent; installs only as
# root (the test needs root; without it it is left out, or fails under CI=true).
set -euo pipefail

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v strip >/dev/null 2>&1 || missing+=(binutils)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "80-podman: $(podman --version), runc, strip and CA certificates are installed" >&2
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "80-podman: not root; not installing ${missing[*]} (the container test needs root)" >&2
    exit 0
fi

echo "80-podman: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update >&2
apt-get install -y --no-install-recommends "${missing[@]}" >&2
podman --version >&2
