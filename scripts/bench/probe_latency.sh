#!/usr/bin/env bash
# probe_latency.sh: read-only work on the sshd testbed (issue 16, item 5):
# `rch fleet status` and an unchanged `rch fleet deploy` of N workers at
# several [defaults] probe_parallel widths, against the bare round trip of the
# peers (`clush -w … true`, `parallel-ssh … true`: connect, authenticate, run
# `true`) to the same workers in the same run, interleaved. Also the CPU each
# costs: rch's own (user+sys, with its children) and the workers' sshd (the
# CPU their sshd masters reaped from the connections' processes).
#
# [defaults] parallel is 1 throughout, so the probe width is exactly the one
# named (probe work never runs narrower than --parallel).
#
#   bash scripts/bench/probe_latency.sh [--workers 32] [--widths "4 8 16 32 64"] [--runs 5] [--build DIR] [--dir DIR]
set -euo pipefail
bench_name=probe_latency
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
n=32 widths="4 8 16 32 64" runs=5 build=$repo/build dir=/tmp/rch-bench-probe
while (($# > 0)); do
  case $1 in
    --workers) n=${2:?}; shift 2 ;;
    --widths) widths=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --dir) dir=${2:?}; shift 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
bench_setup "$dir" "$build" "$n"
trap 'bash "$testbed" down "$bench_dir" >/dev/null 2>&1 || true' EXIT
hosts=$(bench_hosts_file "$n")
cp "$bench_dir/bin/rch-wkr" "$payload" # the real agent: this benchmark is not about bytes
base_config=$(cat "$bench_dir/config.toml")
with_width() { printf '%s\nparallel = 1\nprobe_parallel = %s\n' "$base_config" "$1" >"$bench_dir/config.toml"; }
with_width 64
"$rch" fleet deploy --no-toolchain --parallel 8 --json >"$bench_dir/first.json" || die "first deploy failed"
bench_check_rch_result "first deploy" "$bench_dir/first.json" "$n" completed

sshd_cpu_ticks() { # CPU (clock ticks) the testbed's sshd masters reaped from their children
  local k t=0 v
  for ((k = 1; k <= n; k++)); do
    v=$(awk '{print $16 + $17}' "/proc/$(<"$bench_dir/w$k/sshd.pid")/stat")
    t=$((t + v))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)
# measure LABEL CMD…: one line "LABEL wall_s rch_cpu_s sshd_cpu_s"
measure() {
  local label=$1 t0 t1 c0 c1; shift
  c0=$(sshd_cpu_ticks); t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S' -o "$bench_dir/cpu" "$@" >"$bench_dir/out" 2>"$bench_dir/err" ||
    die "$label: exit $?: $(tail -n 3 "$bench_dir/err")"
  t1=$EPOCHREALTIME; c1=$(sshd_cpu_ticks)
  echo "$label $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') $(awk '{ printf "%.3f", $1 + $2 }' "$bench_dir/cpu") $(awk -v c=$((c1 - c0)) -v hz="$hz" 'BEGIN { printf "%.3f", c / hz }')"
}
say "$n workers, widths $widths, $runs interleaved runs"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
{
  for ((r = 1; r <= runs; r++)); do
    for w in $widths; do
      with_width "$w"
      measure "status@$w" "$rch" fleet status --json
      measure "redeploy@$w" "$rch" fleet deploy --no-toolchain --json
      bench_check_rch_result "redeploy" "$bench_dir/out" "$n" skipped
    done
    measure "clush true" clush -S -f "$n" -w "w[1-$n]" -o "-F $cfg" true
    measure "parallel-ssh true" parallel-ssh -h "$hosts" -p "$n" -x "-F $cfg" true
  done
} | tee "$bench_dir/results" >&2
load1=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$bench_dir/results" "$n" "$runs" "$load0" "$load1" "$rch_commit" "$rch_dirty" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    *label, wall, cpu, sshd = line.split()
    rows[" ".join(label)].append((float(wall), float(cpu), float(sshd)))
n, runs, load0, load1, commit, dirty = sys.argv[2:]
med = lambda xs: statistics.median(xs)
peer = min(med([w for w, _, _ in rows[k]]) for k in ("clush true", "parallel-ssh true"))
print(f"### Read-only work on {n} sshd workers: median (min–max) of {runs} interleaved runs\n")
print("| command | probe_parallel | wall s | vs best bare round trip | rch CPU s | workers' sshd CPU s |")
print("|---|---:|---:|---:|---:|---:|")
for label, (w, c, s) in ((k, zip(*v)) for k, v in rows.items()):
    w, c, s = list(w), list(c), list(s)
    name, _, width = label.partition("@")
    title = {"status": "rch fleet status", "redeploy": "rch fleet deploy, unchanged"}.get(name, name)
    print(f"| {title} | {width or '–'} | {med(w):.2f} ({min(w):.2f}–{max(w):.2f}) | {med(w) / peer:.2f}× |"
          f" {med(c):.2f} | {med(s):.2f} |")
print(f"\nLoad average before {load0}, after {load1}; rch at {commit}"
      + (f" with {dirty} uncommitted paths" if dirty != "0" else "") + ".")
print("Reproduce: `bash scripts/bench/probe_latency.sh --workers", n, "--runs", runs + "`")
PY
