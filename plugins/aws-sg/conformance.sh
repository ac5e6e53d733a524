#!/usr/bin/env bash
# `bash conformance.sh SCRATCH -- COMMAND...` (scripts/plugins-conformance.sh): starts a
# throw-away moto_server (EC2 emulator) on loopback, creates a security group in it, writes its
# ID into SCRATCH/conformance.yaml, runs COMMAND with AWS_ENDPOINT_URL pointing at moto and
# test credentials, stops moto and exits with COMMAND's status (77 when moto_server is not
# installed: scripts/setup/40-moto.sh).
set -euo pipefail
scratch="$1"
shift
[ "${1:-}" = -- ] && shift

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
moto="${RANGEKEEPER_MOTO_SERVER:-}"
[ -n "$moto" ] || { [ -x "$repo/.venv/bin/moto_server" ] && moto="$repo/.venv/bin/moto_server"; } || true
[ -n "$moto" ] || moto="$(command -v moto_server || true)"
if [ -z "$moto" ] || [ ! -x "$moto" ]; then
    echo "conformance(aws-sg): moto_server is not installed (scripts/setup/40-moto.sh)" >&2
    exit 77
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$moto" -H 127.0.0.1 -p "$port" >"$scratch/moto.log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true' EXIT
endpoint="http://127.0.0.1:$port"

# CreateSecurityGroup through EC2's query API, in the region conformance.yaml names (moto reads
# the service and region from the credential scope and checks no signature); prints the ID.
group="$(python3 - "$endpoint" <<'PY'
import re, socket, sys, time, urllib.error, urllib.parse, urllib.request
endpoint = sys.argv[1]
body = urllib.parse.urlencode({
    "Action": "CreateSecurityGroup", "Version": "2016-11-15",
    "GroupName": "rangekeeper-conformance", "GroupDescription": "rangekeeper conformance",
}).encode()
host, port = endpoint.rsplit("/", 1)[1].split(":")
deadline = time.time() + 60
while True:
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("moto_server did not listen on " + endpoint + " within 60s")
        time.sleep(0.2)
request = urllib.request.Request(endpoint + "/", data=body, headers={
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-1/ec2/aws4_request, "
                     "SignedHeaders=host, Signature=0",
    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
try:
    with urllib.request.urlopen(request, timeout=30) as r:
        text = r.read().decode()
except urllib.error.HTTPError as e:
    sys.exit("CreateSecurityGroup failed: HTTP %d %s" % (e.code, e.read()[:500]))
m = re.search(r"<groupId>(sg-[0-9a-f]+)</groupId>", text)
if not m:
    sys.exit("no groupId in moto's answer: " + text[:500])
print(m.group(1))
PY
)"
sed -i "s/sg-0123456789abcdef0/$group/" "$scratch/conformance.yaml"

status=0
env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL_EC2 \
    AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
    AWS_EC2_METADATA_DISABLED=true "$@" || status=$?
exit "$status"
