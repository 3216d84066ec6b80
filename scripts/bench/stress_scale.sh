#!/usr/bin/env bash
# stress_scale.sh: `rch fleet stress` at 1k / 10k / 100k simulated workers
# (issue 16, "Benchmarks"): wall seconds, CPU seconds (user+sys) and peak RSS
# of the whole command, from /usr/bin/time; the invariants must all hold.
#
#   bash scripts/bench/stress_scale.sh [--sizes "1000 10000 100000"] [--parallel 256] [--runs 3] [--build DIR]
set -euo pipefail
bench_name=stress_scale
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
sizes="1000 10000 100000" parallel=256 runs=3 build=$repo/build
while (($# > 0)); do
  case $1 in
    --sizes) sizes=${2:?}; shift 2 ;;
    --parallel) parallel=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[[ -x $build/rch ]] || die "no $build/rch"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset RCH_LOG_LEVEL RCH_SIM_LATENCY_MS RCH_SIM_BANDWIDTH_MBPS RCH_SIM_FAULT_RATE RCH_SIM_SEED RCH_SIM_FAULTS
export NO_COLOR=1 RCH_CONFIG_DIR=$tmp/cfg RCH_STATE_DIR=$tmp/state RCH_DATA_DIR=$tmp/data RCH_HOME=$tmp/home \
  RCH_CACHE_DIR=$tmp/cache
mkdir -p "$RCH_CONFIG_DIR"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
{
  for ((r = 1; r <= runs; r++)); do
    for n in $sizes; do
      /usr/bin/time -f '%e %U %S %M' -o "$tmp/time" "$build/rch" fleet stress --workers "$n" --parallel "$parallel" \
        --json >"$tmp/out" 2>"$tmp/err" || die "stress --workers $n: exit $?: $(tail -n 3 "$tmp/err")"
      python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if d["verdict"] == "pass" else 1)' "$tmp/out" ||
        die "stress --workers $n: an invariant failed: $(head -c 2000 "$tmp/out")"
      echo "$n $(cat "$tmp/time")"
    done
  done
} | tee "$tmp/results" >&2
load1=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$tmp/results" "$parallel" "$runs" "$load0" "$load1" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    n, wall, user, sys_, rss = line.split()
    rows[int(n)].append((float(wall), float(user) + float(sys_), int(rss) / 1024))
p, runs, load0, load1 = sys.argv[2:]
print(f"### rch fleet stress --parallel {p}: median (min–max) of {runs} runs\n")
print("| workers | wall s | CPU s | peak RSS MiB |\n|---:|---:|---:|---:|")
for n in sorted(rows):
    w, c, m = (list(x) for x in zip(*rows[n]))
    print(f"| {n} | {statistics.median(w):.2f} ({min(w):.2f}–{max(w):.2f}) | {statistics.median(c):.2f} |"
          f" {statistics.median(m):.0f} (max {max(m):.0f}) |")
print(f"\nLoad average before {load0}, after {load1}.")
PY
