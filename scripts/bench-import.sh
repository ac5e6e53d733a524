#!/usr/bin/env bash
# Benchmark of `rangekeeper import` at fleet size (issue 18): generates a seeded fleet of
# `file` targets with mixed overlap (a shared office set, regional sets, per-target ranges,
# a few unrestricted targets), then measures the CPU time (user + system) of
#   - `show -o json`: the provider reads alone (every target's file read and parsed), and
#   - `import`: the same reads plus the factoring and the emitted declaration,
# and prints the difference (what import adds beyond the reads) against the goal of < 1 s
# for 1,000 targets. It also checks that the imported declaration plans in sync.
#
#   scripts/bench-import.sh                 # 1,000 targets, release build
#   TARGETS=5000 scripts/bench-import.sh    # another fleet size
#   RUNS=5 ...                              # runs per command (the median is reported)
#   BENCH_STRICT=1 ...                      # exit 2 when the goal is missed
#   RK_BIN=target/debug/rangekeeper ...     # measure another binary (no release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCH_DIR:-$ROOT/target/bench/import}
TARGETS=${TARGETS:-1000}
RUNS=${RUNS:-3}

if [ -n "${RK_BIN:-}" ]; then
    BIN=$(realpath "$RK_BIN") # e.g. a debug build, for a quick check of the script itself
else
    echo "== build (release)" >&2
    cargo build --release -q -p rangekeeper
    BIN=$ROOT/target/release/rangekeeper
fi

python3 - "$BIN" "$OUT" "$TARGETS" "$RUNS" <<'PY'
import os, random, resource, shutil, subprocess, sys, time

bin_, out, n, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
shutil.rmtree(out, ignore_errors=True)
os.makedirs(os.path.join(out, "lists"))
rng = random.Random(18)

def v4(a, b, c, d, plen):
    return f"{a}.{b}.{c}.{d}/{plen}"

office = [v4(81, 2, 69, 160, 28), v4(81, 2, 69, 142, 32), v4(140, 82, 112, 0, 20)]
regions = [[v4(52, r, s * 16, 0, 20) for s in range(6)] for r in range(12)]
teams = [[v4(91, 198, t, s * 32, 27) for s in range(4)] for t in range(40)]
skeleton = ["version: 1", "targets:"]
for i in range(n):
    name = f"t{i:05}"
    path = os.path.join("lists", name + ".conf")
    skeleton += [f"  {name}:", "    provider: file", f"    path: {path}", "    format: plain"]
    if i % 97 == 0:
        continue  # unrestricted: no file yet
    ranges = list(office) if i % 10 else []
    ranges += regions[i % len(regions)]
    if i % 3 == 0:
        ranges += teams[rng.randrange(len(teams))]
    ranges += [v4(100 + (i >> 16) % 100, (i >> 8) & 255, i & 255, 0, 24)]
    rng.shuffle(ranges)
    with open(os.path.join(out, path), "w") as f:
        f.write("\n".join(ranges) + "\n")
with open(os.path.join(out, "skeleton.yaml"), "w") as f:
    f.write("\n".join(skeleton) + "\n")
# The same targets with a placeholder list, so `show` (which needs a valid declaration) reads
# exactly what import reads.
with open(os.path.join(out, "reads.yaml"), "w") as f:
    f.write("\n".join(l + ("\n    allow: [192.0.2.1]" if l.endswith("format: plain") else "")
                      for l in skeleton) + "\n")

def cpu(args, stdout=subprocess.DEVNULL):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([bin_, *args], cwd=out, stdout=stdout, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode not in (0,):
        sys.exit(f"bench-import: {' '.join(args)} exited {p.returncode}: {p.stderr.decode()[-2000:]}")
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used, wall, p

def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]

reads, imports = [], []
for _ in range(runs):
    reads.append(cpu(["-f", "reads.yaml", "-o", "json", "show"])[:2])
    imports.append(cpu(["-f", "skeleton.yaml", "import"])[:2])
with open(os.path.join(out, "imported.yaml"), "wb") as f:
    p = subprocess.run([bin_, "-f", "skeleton.yaml", "import"], cwd=out, stdout=f, stderr=subprocess.PIPE)
summary = [l for l in p.stderr.decode().splitlines() if "targets imported" in l]
plan = subprocess.run([bin_, "-f", "imported.yaml", "plan", "--detailed-exitcode"], cwd=out,
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
if plan.returncode != 0:
    sys.exit(f"bench-import: the imported declaration does not plan in sync (exit {plan.returncode}): {plan.stderr.decode()[-2000:]}")
r_cpu, r_wall = median([c for c, _ in reads]), median([w for _, w in reads])
i_cpu, i_wall = median([c for c, _ in imports]), median([w for _, w in imports])
extra = i_cpu - r_cpu
ok = extra < 1.0
print(f"import of {n} file targets (median of {runs} runs, CPU = user + system):")
print(f"  show -o json (reads only)  CPU {r_cpu * 1000:8.1f} ms   wall {r_wall * 1000:8.1f} ms")
print(f"  import (reads + factoring) CPU {i_cpu * 1000:8.1f} ms   wall {i_wall * 1000:8.1f} ms")
print(f"  import beyond the reads    CPU {extra * 1000:8.1f} ms   (< 1000 ms)  {'PASS' if ok else 'MISS'}")
for line in summary:
    print("  " + line.strip())
print("  the imported declaration plans in sync (plan --detailed-exitcode: 0)")
if not ok and os.environ.get("BENCH_STRICT") == "1":
    sys.exit(2)
PY
