#!/usr/bin/env bash
# upgrade_bytes.sh: what an upgrade of a fleet that runs the previous rch-wkr
# build costs on the wire and in wall time: rch's delta upload (a zstd patch
# against the agent each worker runs), rch with only compression, rch
# sending the whole file, and `clush --copy` of the new binary. Issue 16,
# "Benchmarks". Not a test: it prints a markdown table and exits 0, or exits
# 1 naming the run that failed.
#
#   bash scripts/bench/upgrade_bytes.sh [--workers 32] [--runs 3] [--parallel 8]
#        [--dir /tmp/rch-bench-upgrade] [--build DIR] [--keep]
#
# Bytes are the loopback interface's own counter
# (/sys/class/net/lo/statistics/tx_bytes), not rch's figures: the whole
# benchmark runs in a network namespace of its own (unshare --net --mount,
# sysfs remounted), so the counter sees the testbed's traffic and nothing
# else on the machine. It counts every byte of every packet once (SSH
# handshakes, commands, TCP/IP headers), for all N workers.
#
# Two upgrades, both real builds from this tree (build/ and build/tests/):
#   bump: rch-wkr (version V) -> rch-wkr-next (V+1 minor, same sources: a version bump);
#   code: rch-wkr-unhealthy (V, its main built with RCH_WKR_FAIL_HEALTH, i.e. other
#         code) -> rch-wkr-next (a build with a code change and a version bump).
# Per round and upgrade, each run starts from all N workers running the base
# (installed by rch beforehand, not measured), interleaved:
#   delta-cold  rch fleet deploy, the patch not cached yet (made during the run);
#   delta-warm  the same with the patch cached (a second fleet, or a rerun);
#   zstd        [deploy] delta = "never": the compressed file;
#   full        [deploy] compress = delta = "never": the whole file (the same-run full copy);
#   clush       clush -S -f P --copy NEW --dest rch-wkr (OpenSSH as shipped, no rch pipeline).
set -euo pipefail
umask 022

bench_name=upgrade_bytes
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
n=32
runs=3
parallel=8
dir=/tmp/rch-bench-upgrade
build=$repo/build
keep=no
args=("$@")
while (($# > 0)); do
  if bench_option "$@"; then shift "$bench_shift"; continue; fi
  case $1 in
    -h | --help) sed -n '9,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
for v in n runs parallel; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$v must be a positive integer"; done

# Into a network namespace of our own, where lo carries only this benchmark
# (the peers are installed first: there is no network in there).
if [[ ${RCH_BENCH_NETNS:-} != 1 ]]; then
  ((EUID == 0)) || die "run as root (network namespace, testbed user's worker roots)"
  bench_install_peers
  exec env RCH_BENCH_NETNS=1 unshare --net --mount bash "${BASH_SOURCE[0]}" "${args[@]}"
fi
ip link set lo up
mount -t sysfs sysfs /sys
lo_tx() { cat /sys/class/net/lo/statistics/tx_bytes; }

for b in rch rch-wkr tests/rch-wkr-next tests/rch-wkr-unhealthy; do
  [[ -x $build/$b ]] || die "no $build/$b (cmake --build $build)"
done
cleanup() {
  if [[ $keep == no && -n ${bench_dir:-} ]]; then bash "$testbed" down "$bench_dir" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
bench_setup "$dir" "$build" "$n"
dir=$bench_dir
cp "$build/tests/rch-wkr-next" "$build/tests/rch-wkr-unhealthy" "$dir/bin/"
next_ver=$("$dir/bin/rch-wkr-next" --version | awk '{print $2; exit}')
# bench_setup's padded payload is for the full-deploy benchmark: this one has its own home and cache.
export RCH_HOME=$dir/home-upgrade RCH_CACHE_DIR=$dir/cache-upgrade
rm -rf "$RCH_HOME" "$RCH_CACHE_DIR" "$dir/results-upgrade.csv"
stage() { mkdir -p "$RCH_HOME/versions/v$1"; cp "$2" "$RCH_HOME/versions/v$1/rch-wkr"; }
stage "$next_ver" "$dir/bin/rch-wkr-next"
next_sha=$(hash_files "$dir/bin/rch-wkr-next" | cut -d' ' -f1)
next_size=$(stat -c %s "$dir/bin/rch-wkr-next")
for mode in delta zstd full; do
  mkdir -p "$dir/cfg-$mode"
  cp "$dir/workers.toml" "$dir/cfg-$mode/"
  { cat "$dir/config.toml"; printf '[deploy]\n'
    case $mode in zstd) printf 'delta = "never"\n' ;; full) printf 'compress = "never"\ndelta = "never"\n' ;; esac
  } >"$dir/cfg-$mode/config.toml"
done
workers_csv=$(seq -s, -f 'w%g' 1 "$n")
rch_deploy() { # cfg-mode version label
  local out=$dir/runs/$3
  RCH_CONFIG_DIR=$dir/cfg-$1 timeout 600 "$rch" fleet deploy --version "$2" --no-toolchain --parallel "$parallel" \
    --worker "$workers_csv" --json </dev/null >"$out.out" 2>"$out.err" || die "$3: rch exited $?: $(tail -n 5 "$out.err")"
  bench_check_rch_result "$3" "$out.out" "$n" completed
}
# Every worker runs the base: wiped, then the base installed by rch (full copy, not measured).
install_base() { # base-binary label
  bench_wipe "$n"
  stage "$ver" "$1"
  rch_deploy full "$ver" "$2"
}
check_next() { # label: every worker holds the new build, byte for byte
  local k bad
  local -a files=()
  for ((k = 1; k <= n; k++)); do files+=("$dir/w$k/root/$1"); done
  bad=$(hash_files "${files[@]}" | awk -v want="$next_sha" '$1 != want { print $2 }')
  [[ -z $bad ]] || die "wrong sha256 after the upgrade on: $bad"
}
echo "scenario,round,tool,seconds,lo_tx_bytes,sent_as" >"$dir/results-upgrade.csv"
measure() { # scenario round tool
  local scenario=$1 round=$2 tool=$3 tag=$1-$3-$2 b0 b1 t0 t1 how
  case $tool in
    delta-cold) rm -f "$RCH_CACHE_DIR"/transfer/*.patch ;;
  esac
  b0=$(lo_tx); t0=$EPOCHREALTIME
  case $tool in
    delta-cold | delta-warm) rch_deploy delta "$next_ver" "$tag" ;;
    zstd) rch_deploy zstd "$next_ver" "$tag" ;;
    full) rch_deploy full "$next_ver" "$tag" ;;
    clush)
      timeout 600 clush -S -f "$parallel" -w "w[1-$n]" -o "-F $cfg" --copy "$dir/bin/rch-wkr-next" --dest rch-wkr \
        </dev/null >"$dir/runs/$tag.out" 2>"$dir/runs/$tag.err" || die "$tag: clush exited $?" ;;
  esac
  t1=$EPOCHREALTIME; b1=$(lo_tx)
  if [[ $tool == clush ]]; then
    check_next rch-wkr
    how=whole
  else
    check_next bin/rch-wkr
    how=$(python3 -c '
import json, sys, collections
r = json.load(open(sys.argv[1]))
c = collections.Counter(s["output"].split("sent as ")[-1].split(" (")[0]
                        for w in r["workers"] for s in w["steps"] if s["name"] == "transfer")
print(" ".join(f"{k}×{v}" for k, v in c.items()))' "$dir/runs/$tag.out")
  fi
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  echo "$scenario,$round,$tool,$secs,$((b1 - b0)),$how" >>"$dir/results-upgrade.csv"
  say "$tag: ${secs}s, $((b1 - b0)) bytes on lo ($how)"
}
bench_start=$SECONDS
for ((r = 1; r <= runs; r++)); do
  for scenario in bump code; do
    base=$dir/bin/rch-wkr
    [[ $scenario == code ]] && base=$dir/bin/rch-wkr-unhealthy
    for tool in delta-cold delta-warm zstd full clush; do
      install_base "$base" "base-$scenario-$tool-$r"
      measure "$scenario" "$r" "$tool"
    done
  done
done
patches=$(for f in "$RCH_CACHE_DIR"/transfer/*.patch; do echo "$(basename "$f") $(stat -c %s "$f")"; done)
zst=$(stat -c %s "$RCH_CACHE_DIR/transfer/$next_sha.zst")

python3 - "$dir/results-upgrade.csv" "$n" "$parallel" "$runs" "$next_size" "$zst" "$rch_commit" "$rch_dirty" \
  "$ver" "$next_ver" "$((SECONDS - bench_start))" "$patches" <<'PY' | tee "$dir/summary-upgrade.md"
import csv, statistics, sys
from collections import defaultdict
(results, n, parallel, runs, next_size, zst, commit, dirty, ver, next_ver, secs, patches) = sys.argv[1:]
rows = list(csv.DictReader(open(results)))
by = defaultdict(list)
for r in rows: by[(r["scenario"], r["tool"])].append(r)
med = statistics.median
tools = ["delta-cold", "delta-warm", "zstd", "full", "clush"]
names = {"delta-cold": "rch, patch made in the run", "delta-warm": "rch, patch cached", "zstd": "rch, compressed only",
         "full": "rch, whole file", "clush": "clush --copy"}
label = {"bump": f"version bump ({ver} → {next_ver}, same code)", "code": f"code change + version bump"}
print(f"### Upgrade of {n} workers to rch-wkr {next_ver} ({int(next_size)} bytes), --parallel / fan-out {parallel}: "
      f"bytes on the loopback interface and wall seconds, median of {runs} interleaved runs\n")
for sc in ("bump", "code"):
    full_b = med(int(r["lo_tx_bytes"]) for r in by[(sc, "full")])
    clush_s = med(float(r["seconds"]) for r in by[(sc, "clush")])
    print(f"**{label[sc]}**\n")
    print("| how | lo bytes (all workers) | per worker | vs rch whole file | wall s (min–max) | vs clush wall | sent as |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for t in tools:
        rs = by[(sc, t)]
        b = med(int(r["lo_tx_bytes"]) for r in rs)
        s = [float(r["seconds"]) for r in rs]
        print(f"| {names[t]} | {b:,.0f} | {b / int(n):,.0f} | {b / full_b * 100:.1f} % | {med(s):.2f} ({min(s):.2f}–{max(s):.2f}) "
              f"| {med(s) / clush_s:.2f}× | {rs[-1]['sent_as']} |")
    print()
print(f"Cached: the new build zstd-compressed {int(zst):,} bytes; patches: " +
      "; ".join(f"{p.split()[0][:12]}…→{p.split()[0].split('-')[1][:12]}… {int(p.split()[1]):,} bytes"
                for p in patches.splitlines() if p.strip()) + ".")
print(f"rch at commit {commit}" + (f" with {dirty} uncommitted paths" if int(dirty) else "") + f"; benchmark took {secs} s.")
PY
