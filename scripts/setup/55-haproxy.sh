#!/usr/bin/env bash
# Installs what the HAProxy plugin's tests need: Debian's `haproxy` (>= 2.4, for versioned ACL
# updates over the runtime API; bookworm has 2.6). Idempotent: installs only when missing, and
# only as root. Without root it says so and leaves it; with CI=true a haproxy that is still
# missing (or too old) fails the setup, so the tests never silently skip.
set -euo pipefail

have_haproxy() {
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]
}

if ! have_haproxy; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "55-haproxy: installing haproxy" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update >&2
        apt-get install -y --no-install-recommends haproxy >&2
        # The tests start their own haproxy; the packaged service is not wanted.
        if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
            systemctl disable --now haproxy >&2 2>/dev/null || true
        fi
    else
        echo "55-haproxy: not root; not installing haproxy (the HAProxy plugin's tests need it)" >&2
    fi
fi

if ! have_haproxy; then
    if [ "${CI:-}" = true ]; then
        echo "55-haproxy: haproxy is missing and CI=true: the HAProxy plugin's tests cannot run" >&2
        exit 1
    fi
    exit 0
fi

exe="$(command -v haproxy 2>/dev/null || echo /usr/sbin/haproxy)"
version="$("$exe" -v 2>/dev/null | sed -n 's/^HAProxy version \([0-9]*\.[0-9]*\).*/\1/p' | head -n1)"
echo "55-haproxy: $exe, version ${version:-unknown}" >&2
case "$version" in
    1.* | 2.[0-3]) 
        echo "55-haproxy: HAProxy $version is older than 2.4 (no versioned ACL updates)" >&2
        [ "${CI:-}" = true ] && exit 1
        ;;
esac
exit 0
