#!/usr/bin/env bash
# Installs what the hostfw provider's real-kernel tests need: nftables (nft), iptables
# (iptables/ip6tables with -save/-restore) and iproute2 (ip netns). Idempotent: installs only
# what is missing, and only as root (the tests themselves need root; without it they skip,
# or fail under CI=true).
set -euo pipefail

missing=()
command -v nft >/dev/null 2>&1 || missing+=(nftables)
{ command -v iptables-restore >/dev/null 2>&1 && command -v ip6tables-restore >/dev/null 2>&1; } || missing+=(iptables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "50-hostfw: nft, iptables and ip are installed" >&2
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "50-hostfw: not root; not installing ${missing[*]} (the hostfw real-kernel tests need root)" >&2
    exit 0
fi

echo "50-hostfw: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update >&2
apt-get install -y --no-install-recommends "${missing[@]}" >&2
nft --version >&2
iptables --version >&2
