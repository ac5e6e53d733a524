#!/usr/bin/env bash
# Assembles the build context of the Containerfile (no base image is needed, nor pulled):
# a root filesystem holding the rangekeeper binary, exactly the shared libraries it loads
# (as `ldd` lists them: the binary links everything else statically, and talks TLS with
# rustls, so that is the C library and its loader), the CA certificates, and passwd/group
# entries for the non-root user 65532. `--tool CMD` adds another command with its libraries
# (`--tool nft` for the hostfw DaemonSet image).
#
#   cargo build --release --locked
#   scripts/container-context.sh                        # -> target/container
#   podman build -f Containerfile -t ghcr.io/rangekeeper/rangekeeper:0.1.0 target/container
#
# Usage: scripts/container-context.sh [--binary PATH] [--tool CMD]... [--no-strip] [DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

binary=target/release/rangekeeper
out=target/container
tools=()
strip=true
certs=/etc/ssl/certs/ca-certificates.crt

die() {
    echo "container-context: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --tool) tools+=("${2:?--tool needs a command}"); shift 2 ;;
    --no-strip) strip=false; shift ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) out="$1"; shift ;;
    esac
done

[ -x "$binary" ] || die "no executable at $binary: build it first (cargo build --release --locked), or give --binary PATH"
[ -s "$certs" ] || die "no CA certificates at $certs: install Debian's ca-certificates"
command -v ldd >/dev/null 2>&1 || die "ldd is needed to find the libraries the binary loads"

root="$out/rootfs"
rm -rf "$root"
mkdir -p "$root"/usr/local/bin "$root"/etc/ssl/certs "$root"/tmp "$root"/var/lib/rangekeeper
chmod 1777 "$root"/tmp

# The libraries `file` loads, at the same paths (the loader's path is baked into the binary).
copy_libs() {
    local file="$1" out line lib
    if ! out="$(ldd "$file" 2>&1)"; then
        case "$out" in
        *"not a dynamic executable"* | *"statically linked"*) return 0 ;;
        *) die "ldd $file failed: $out" ;;
        esac
    fi
    while IFS= read -r line; do
        case "$line" in
        *"not found"*) die "$file needs a library that is not installed: $line" ;;
        *"=> /"*) lib="${line#*=> }"; lib="${lib%% (*}" ;;
        [[:space:]]/*) lib="${line#"${line%%[![:space:]]*}"}"; lib="${lib%% (*}" ;;
        *) continue ;; # linux-vdso.so.1: provided by the kernel
        esac
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
        echo "container-context: + $lib" >&2
    done <<<"$out"
}

install -m 0755 "$binary" "$root/usr/local/bin/rangekeeper"
if $strip && command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$root/usr/local/bin/rangekeeper"
fi
copy_libs "$root/usr/local/bin/rangekeeper"

for t in "${tools[@]}"; do
    path="$(type -P "$t")" || die "--tool $t: no such command on PATH"
    mkdir -p "$root$(dirname "$path")"
    cp -L "$path" "$root$path"
    copy_libs "$path"
done

cp -L "$certs" "$root/etc/ssl/certs/ca-certificates.crt"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
rangekeeper:x:65532:65532:rangekeeper:/var/lib/rangekeeper:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
rangekeeper:x:65532:
EOF
# Name lookups: the hosts file first, then DNS (glibc's own default order is the reverse).
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"

cp Containerfile "$out/Containerfile"
echo "container-context: $out is ready: podman build -f $out/Containerfile -t IMAGE $out" >&2
