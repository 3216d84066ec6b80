#!/usr/bin/env bash
# adhoc_vs_clush.sh: `rch fleet exec -- uname -r` against `clush -b uname -r`,
# and `rch fleet copy` of the 15 MiB payload against `clush --copy`, on the
# sshd testbed (scripts/testbed.sh). Issue 14, "Benchmarks". Not a test: it
# prints a markdown table (also DIR/summary.md, raw data DIR/results.csv) and
# exits 0, or exits 1 naming the tool and run that failed.
#
#   bash scripts/bench/adhoc_vs_clush.sh [--workers 32] [--runs 5] [--parallel 8]
#        [--dir /tmp/rch-bench-adhoc] [--build DIR] [--keep]
#
# Must run as root (installs clustershell with apt-get, wipes the worker
# roots of the testbed user). Setup as deploy_vs_peers.sh (scripts/bench/lib.sh):
# N sshd, the 15 MiB payload, an ssh config with Host w1..wN for clush.
# Then --runs rounds of, interleaved, at the same fan-out (--parallel P = clush -f P):
#   rch-exec    rch fleet exec --parallel P --worker w[1-N] -- uname -r
#   clush-exec  clush -b -f P -w w[1-N] -o "-F cfg" uname -r
#   rch-copy    rch fleet copy --force --parallel P --worker w[1-N] PAYLOAD DEST  (DEST new each run)
#   clush-copy  clush -f P -w w[1-N] -o "-F cfg" --copy PAYLOAD --dest rch-wkr
# Every exec run must print one block for all N workers with the local
# kernel release; every copy run must leave the payload's sha256 on every
# worker (rch: "N copied"). The testbed workers share one login home, so
# rch's DEST (in that home) is one file written N times through N temp names
# (--force: without it, workers after the first would find it there and skip);
# clush's lands in each worker's root (its sftp start directory).
set -euo pipefail
umask 022

bench_name=adhoc_vs_clush
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
n=32
runs=5
parallel=8
dir=/tmp/rch-bench-adhoc
build=$repo/build
keep=no

usage() {
  sed -n '8,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
while (($# > 0)); do
  if bench_option "$@"; then shift "$bench_shift"; continue; fi
  case $1 in
    -h | --help) usage ;;
    *) echo "adhoc_vs_clush: unknown argument '$1'" >&2; usage ;;
  esac
done
for v in n runs parallel; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v/n/workers} must be a positive integer"; done

cleanup() {
  if [[ $keep == no && -n ${bench_dir:-} ]]; then bash "$testbed" down "$bench_dir" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
bench_setup "$dir" "$build" "$n"
dir=$bench_dir
kernel=$(uname -r)
whome=$(getent passwd rchtest | cut -d: -f6)
[[ -d $whome ]] || die "no home directory for rchtest"

results=$dir/results.csv
echo "round,tool,seconds,rss_kb,load1" >"$results"

run_tool() { # tool round
  local tool=$1 r=$2 out=$dir/runs/$1-$2 t0 t1 rc=0 k dest=rch-bench-copy.$2
  local -a cmd
  case $tool in
    rch-exec) cmd=("$rch" fleet exec --parallel "$parallel" --worker "w[1-$n]" -- uname -r) ;;
    clush-exec) cmd=(clush -b -f "$parallel" -w "w[1-$n]" -o "-F $cfg" uname -r) ;;
    rch-copy) cmd=("$rch" fleet copy --force --parallel "$parallel" --worker "w[1-$n]" "$payload" "$dest") ;;
    clush-copy) cmd=(clush -f "$parallel" -w "w[1-$n]" -o "-F $cfg" --copy "$payload" --dest rch-wkr) ;;
  esac
  bench_wipe "$n"
  rm -f "$whome"/rch-bench-copy.*
  t0=$EPOCHREALTIME
  /usr/bin/time -f %M -o "$out.rss" "${cmd[@]}" </dev/null >"$out.out" 2>"$out.err" || rc=$?
  t1=$EPOCHREALTIME
  ((rc == 0)) || die "$tool round $r exited $rc: ${cmd[*]}
$(tail -n 15 "$out.out" "$out.err")"
  case $tool in
    rch-exec) grep -qx "w\[1-$n\] (exit 0)" "$out.out" && grep -qxF "$kernel" "$out.out" ||
      die "$tool round $r: not one block for w[1-$n]: $(head -n 5 "$out.out")" ;;
    clush-exec) grep -qx "w\[1-$n\] ([0-9]*)" "$out.out" && grep -qxF "$kernel" "$out.out" ||
      die "$tool round $r: not one block for w[1-$n]: $(head -n 5 "$out.out")" ;;
    rch-copy)
      grep -q ": $n copied, 0 mode fixed, 0 skipped, 0 failed" "$out.out" || die "$tool round $r: $(cat "$out.out")"
      bench_check_files "$tool round $r" "$whome/$dest" ;;
    clush-copy)
      local -a files=()
      for ((k = 1; k <= n; k++)); do files+=("$dir/w$k/root/rch-wkr"); done
      bench_check_files "$tool round $r" "${files[@]}" ;;
  esac
  local s load1
  s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  load1=$(cut -d' ' -f1 /proc/loadavg)
  echo "$r,$tool,$s,$(tail -n 1 "$out.rss"),$load1" >>"$results"
  say "round $r $tool: ${s}s (load $load1)"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= runs; r++)); do
  for tool in rch-exec clush-exec rch-copy clush-copy; do run_tool "$tool" "$r"; done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
rm -f "$whome"/rch-bench-copy.*

python3 - "$results" "$n" "$parallel" "$runs" "$payload_bytes" "$load_start" "$load_end" "$rch_commit" \
  <<'PY' | tee "$dir/summary.md"
import csv, statistics, sys
results, n, parallel, runs, size, load_start, load_end, commit = sys.argv[1:]
n, size = int(n), int(size)
rows = list(csv.DictReader(open(results)))
secs = lambda tool: [float(r["seconds"]) for r in rows if r["tool"] == tool]
med = statistics.median
cell = lambda xs: f"{med(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"
print(f"### rch fleet exec / copy vs clush on {n} testbed workers, fan-out {parallel}, "
      f"median (min–max) wall seconds of {runs} interleaved runs\n")
print("| task | rch | clush | rch / clush |\n|---|---:|---:|---:|")
for task, a, b in (("exec `uname -r`", "rch-exec", "clush-exec"),
                   (f"copy {size / 1048576:.0f} MiB", "rch-copy", "clush-copy")):
    print(f"| {task} | {cell(secs(a))} | {cell(secs(b))} | **{med(secs(a)) / med(secs(b)):.2f}×** |")
rss = [int(r["rss_kb"]) for r in rows if r["tool"].startswith("rch")]
print(f"\nAggregate copy rate: rch {n * size / 1e6 / med(secs('rch-copy')):.0f} MB/s, "
      f"clush {n * size / 1e6 / med(secs('clush-copy')):.0f} MB/s. rch peak RSS median {med(rss) / 1024:.1f} MiB. "
      f"Load at start {load_start}, at end {load_end}; rch at commit {commit}.")
PY
