#!/usr/bin/env bash
# sim_deploy.sh: `RCH_MOCK_SSH=1 rch fleet deploy` to N simulated workers (a
# first deploy, then an unchanged redeploy that reads the fleet back from the
# state the first one left), against `rch fleet stress` at the same size and
# parallelism. Issue 16, "Benchmarks". Wall seconds and peak RSS (/usr/bin/time).
#
#   bash scripts/bench/sim_deploy.sh [--workers 5000] [--parallel 256] [--runs 3] [--build DIR]
set -euo pipefail
bench_name=sim_deploy
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
n=5000 parallel=256 runs=3 build=$repo/build
while (($# > 0)); do
  case $1 in
    --workers) n=${2:?}; shift 2 ;;
    --parallel) parallel=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[[ -x $build/rch && -x $build/rch-wkr ]] || die "no $build/rch or $build/rch-wkr"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset RCH_LOG_LEVEL RCH_SIM_LATENCY_MS RCH_SIM_BANDWIDTH_MBPS RCH_SIM_FAULT_RATE RCH_SIM_SEED RCH_SIM_FAULTS
export NO_COLOR=1 RCH_CONFIG_DIR=$tmp/cfg RCH_DATA_DIR=$tmp/data RCH_HOME=$tmp/home RCH_CACHE_DIR=$tmp/cache
mkdir -p "$RCH_CONFIG_DIR"
for ((i = 1; i <= n; i++)); do printf '[[workers]]\nid = "sim-%d"\nhost = "10.0.%d.%d"\n\n' "$i" $((i / 250)) $((i % 250)); done \
  >"$RCH_CONFIG_DIR/workers.toml"
timed() { # label cmd…: prints "label seconds rss_mib"
  local label=$1 t0 t1; shift
  t0=$EPOCHREALTIME
  /usr/bin/time -f %M -o "$tmp/rss" "$@" >"$tmp/out" 2>"$tmp/err" || die "$label: exit $?: $(tail -n 3 "$tmp/err")"
  t1=$EPOCHREALTIME
  echo "$label $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') $(awk '{ printf "%.0f", $1 / 1024 }' "$tmp/rss")"
}
{
  for ((r = 1; r <= runs; r++)); do
    export RCH_STATE_DIR=$tmp/state-$r
    RCH_MOCK_SSH=1 timed deploy "$build/rch" fleet deploy --no-toolchain --parallel "$parallel" --json
    RCH_MOCK_SSH=1 timed redeploy "$build/rch" fleet deploy --no-toolchain --parallel "$parallel" --json
    timed stress "$build/rch" fleet stress --workers "$n" --parallel "$parallel" --json
  done
} | tee "$tmp/results" >&2
python3 - "$tmp/results" "$n" "$parallel" "$runs" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    label, s, rss = line.split()
    rows[label].append((float(s), int(rss)))
n, p, runs = sys.argv[2:]
print(f"### Simulated fleet (RCH_MOCK_SSH=1, 5 ms per command): {n} workers, --parallel {p}, median (min–max) of {runs} runs\n")
print("| command | wall s | peak RSS MiB |\n|---|---:|---:|")
names = {"deploy": "fleet deploy (all complete)", "redeploy": "fleet deploy again (all skipped)",
         "stress": "fleet stress --workers N"}
for k in ("deploy", "redeploy", "stress"):
    s = [x for x, _ in rows[k]]
    print(f"| {names[k]} | {statistics.median(s):.2f} ({min(s):.2f}–{max(s):.2f}) | {max(r for _, r in rows[k])} |")
PY
