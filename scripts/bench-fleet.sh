#!/usr/bin/env bash
# Benchmark of one in-sync `rangekeeper reconcile --once` pass at fleet size (issue 16):
# a fake ARM and a fake EKS on loopback (test-support/examples/bench_fleet_fakes.rs) add the
# same latency (50 ms) to every request and hold a fleet, half AKS and half EKS, whose
# clusters already carry the declared allow-list. One pass over 1,000 and one over 10,000
# targets, each measured as a whole process (wall time, peak RSS of the child from wait4),
# with the requests the fakes saw per target, against the goals:
#   1,000 targets: < 5 s wall, < 64 MB peak RSS, 1 API call per in-sync target
#   10,000 targets: < 30 s wall, < 256 MB peak RSS, 1 API call per in-sync target
# and the ratio of the wall time to the ideal, targets x latency / effective concurrency
# (the global bound, or the per-scope bound times the quota scopes when that is less). The AKS
# clusters are spread over 4 subscriptions and the EKS clusters over 3 regions (7 scopes).
#
#   scripts/bench-fleet.sh                      # 1,000 and 10,000 targets, default concurrency
#   SIZES="1000" scripts/bench-fleet.sh         # other fleet sizes
#   CONCURRENCY=32 scripts/bench-fleet.sh       # pass --concurrency (else the binary's default)
#   PER_SCOPE=8 scripts/bench-fleet.sh          # pass --concurrency-per-scope
#   SUBSCRIPTIONS=1 scripts/bench-fleet.sh      # AKS subscriptions of the fake fleet (4)
#   LATENCY_MS=50 ...                           # latency added to every request
#   BENCH_STRICT=1 ...                          # exit 2 when a goal is missed
#   RK_BIN=target/debug/rangekeeper ...         # measure another binary (no release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCH_DIR:-$ROOT/target/bench/fleet}
SIZES=${SIZES:-1000 10000}
LATENCY_MS=${LATENCY_MS:-50}
CONCURRENCY=${CONCURRENCY:-}
PER_SCOPE=${PER_SCOPE:-}
SUBSCRIPTIONS=${SUBSCRIPTIONS:-4}

echo "== build (release)" >&2
cargo build --release -q -p rangekeeper-test-support --example bench_fleet_fakes
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
FAKES=$TARGET_DIR/release/examples/bench_fleet_fakes
if [ -n "${RK_BIN:-}" ]; then
    BIN=$(realpath "$RK_BIN")
else
    cargo build --release -q -p rangekeeper
    BIN=$TARGET_DIR/release/rangekeeper
fi

python3 - "$BIN" "$FAKES" "$OUT" "$LATENCY_MS" "$CONCURRENCY" "$PER_SCOPE" "$SUBSCRIPTIONS" $SIZES <<'PY'
import json, os, re, shutil, subprocess, sys, time

bin_, fakes, out, latency_ms, concurrency, per_scope, subscriptions = sys.argv[1:8]
sizes = [int(n) for n in sys.argv[8:]]
latency = int(latency_ms) / 1000
GOALS = {1000: (5.0, 64), 10000: (30.0, 256)}  # wall seconds, peak RSS MB

# The binary's own defaults, as its help states them.
help_text = subprocess.run([bin_, "reconcile", "--help"], capture_output=True, text=True).stdout
def default_of(flag):
    m = re.search(r"--" + flag + r" <N>[^\[]*\[default: (\d+)\]", help_text)
    if not m:
        sys.exit(f"bench-fleet: cannot find the default of --{flag} in `reconcile --help`")
    return int(m.group(1))
used = int(concurrency) if concurrency else default_of("concurrency")
used_per_scope = int(per_scope) if per_scope else default_of("concurrency-per-scope")

shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
missed = []
print(f"one in-sync `reconcile --once` pass, {latency_ms} ms added to every request, "
      f"concurrency {used}{'' if concurrency else ' (the default)'}, "
      f"{used_per_scope} per quota scope{'' if per_scope else ' (the default)'}, "
      f"AKS over {subscriptions} subscription(s), EKS over 3 regions; "
      f"load average before: {os.getloadavg()[0]:.2f}")
for n in sizes:
    aks, eks = n // 2, n - n // 2
    decl = os.path.join(out, f"fleet-{n}.yaml")
    peers = subprocess.Popen([fakes, "--aks", str(aks), "--eks", str(eks), "--latency-ms",
                              latency_ms, "--subscriptions", subscriptions, "--out", decl],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(peers.stdout.readline())
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AWS_") and not k.startswith("AZURE_")
               and k != "RANGEKEEPER_AZURE_ACCESS_TOKEN"}
        env.update({
            "RANGEKEEPER_AZURE_ACCESS_TOKEN": ready["token"],
            "AWS_ENDPOINT_URL_EKS": ready["eks"],
            "AWS_ACCESS_KEY_ID": ready["accessKey"],
            "AWS_SECRET_ACCESS_KEY": "bench-secret-not-a-secret",
            "AWS_CONFIG_FILE": os.path.join(out, "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(out, "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "RUST_LOG": "warn",
        })
        args = [bin_, "-f", decl, "-o", "json", "reconcile", "--once",
                "--state-dir", os.path.join(out, f"state-{n}")]
        if concurrency:
            args += ["--concurrency", concurrency]
        if per_scope:
            args += ["--concurrency-per-scope", per_scope]
        with open(os.path.join(out, f"result-{n}.json"), "w") as so, \
             open(os.path.join(out, f"stderr-{n}.log"), "w") as se:
            t0 = time.perf_counter()
            child = subprocess.Popen(args, stdout=so, stderr=se, env=env)
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        peers.stdin.write("stats\n")
        peers.stdin.flush()
        seen = json.loads(peers.stdout.readline())
    finally:
        peers.stdin.close()
        peers.wait()
    if child.returncode != 0:
        with open(os.path.join(out, f"stderr-{n}.log")) as f:
            tail = f.read()[-3000:]
        sys.exit(f"bench-fleet: reconcile over {n} targets exited {child.returncode}:\n{tail}")
    with open(os.path.join(out, f"result-{n}.json")) as f:
        results = json.load(f)["results"]
    not_in_sync = [r for r in results if r["result"] != "in-sync"]
    if len(results) != n or not_in_sync:
        sys.exit(f"bench-fleet: expected {n} targets in sync, got {len(results)} results, "
                 f"{len(not_in_sync)} not in sync: {not_in_sync[:3]}")
    rss_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    cpu = usage.ru_utime + usage.ru_stime
    calls = seen["aks"]["requests"] + seen["eks"]["requests"]
    per_target = calls / n
    most = max(seen["aks"]["max"], seen["eks"]["max"])
    fewest = min(seen["aks"]["min"], seen["eks"]["min"])
    effective = min(used, used_per_scope * ready["scopes"])
    ideal = n * latency / effective
    goal_wall, goal_rss = GOALS.get(n, (None, None))
    def mark(ok):
        return "PASS" if ok else "MISS"
    checks = []
    print(f"\n{n} targets ({aks} aks, {eks} eks):")
    line = f"  wall            {wall:8.2f} s"
    if goal_wall is not None:
        checks.append(("wall", wall < goal_wall))
        line += f"   (< {goal_wall:g} s)  {mark(wall < goal_wall)}"
    print(line)
    line = f"  peak RSS        {rss_mb:8.1f} MB"
    if goal_rss is not None:
        checks.append(("peak RSS", rss_mb < goal_rss))
        line += f"   (< {goal_rss} MB)  {mark(rss_mb < goal_rss)}"
    print(line)
    calls_ok = most == 1 and fewest == 1 and calls == n
    checks.append(("calls per target", calls_ok))
    print(f"  API calls       {calls:8d}      = {per_target:.2f} per target "
          f"(min {fewest}, max {most}; aks {seen['aks']['requests']}, eks {seen['eks']['requests']}, "
          f"errors {seen['aks']['not2xx'] + seen['eks']['not2xx']})   (= 1)  {mark(calls_ok)}")
    print(f"  ideal           {ideal:8.2f} s    ({n} x {latency_ms} ms / {effective}: "
          f"min({used}, {used_per_scope} x {ready['scopes']} scopes))   wall / ideal = {wall / ideal:.2f}")
    print(f"  per scope       {seen['mostInFlightPerScope']:8d}      most requests of one scope "
          f"in flight at once (bound {used_per_scope}); {seen['throttled']} throttled")
    print(f"  CPU             {cpu:8.2f} s    (user + system; {cpu / n * 1000:.2f} ms per target)")
    missed += [f"{n} targets: {what}" for what, ok in checks if not ok]
if missed:
    print("\nmissed: " + "; ".join(missed))
    if os.environ.get("BENCH_STRICT") == "1":
        sys.exit(2)
PY
