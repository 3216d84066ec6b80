#!/usr/bin/env bash
# deploy_variants.sh: where rch's deploy time goes on the worker, measured by
# replacing the remote step scripts (rch/deploy/remote_steps.lua, loaded
# through --script-dir; no product code changes) with variants, against
# `clush --copy` with the forced key exchange and cipher as the bare-copy
# reference. A diagnostic for docs/performance.md, not a test.
#
#   bash scripts/bench/deploy_variants.sh [--workers 32] [--runs 3] [--parallel 8]
#        [--redeploy-parallel P] [--variants "builtin openssl …"]
#        [--dir /tmp/rch-bench-variants] [--build DIR] [--keep]
#
# Variants (the module is extracted from the snapshotted rch binary itself,
# `rch scripts show rch/deploy/remote_steps.lua`, then edited):
#   builtin         as shipped: transfer `tee tmp | sha256sum`, `sync tmp`;
#                   preflight runs `sha256sum versions/v<target>/rch-wkr`
#   openssl         both hashes with `openssl dgst -sha256` when the worker
#                   has openssl (SHA-NI), else sha256sum as before
#   openssl-nosync  openssl, and no `sync tmp` before the rename (attribution
#                   only: durability is wanted)
#   nohash          transfer `cat > tmp`, no hash, no sync; preflight does not
#                   hash (attribution only: the floor of rch's round trips)
#   manifest        preflight reads the target's sha256 from the
#                   versions/v<target>/manifest.json rch wrote at install
#                   instead of hashing 15 MB (transfer as builtin)
# Each round, for each variant: wipe, full deploy to N workers (timed), then
# an unchanged redeploy (timed, all Skipped); then one clush --copy (forced).
set -euo pipefail
umask 022
bench_name=deploy_variants
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

n=32
runs=3
parallel=8
dir=/tmp/rch-bench-variants
build=$repo/build
keep=no
variants=(builtin openssl openssl-nosync nohash manifest)
redeploy_parallel=

while (($# > 0)); do
  if bench_option "$@"; then shift "$bench_shift"; continue; fi
  case $1 in
    --redeploy-parallel) redeploy_parallel=${2:?}; shift 2 ;;
    --variants) read -r -a variants <<<"${2:?}"; shift 2 ;;
    *) sed -n '8,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
redeploy_parallel=${redeploy_parallel:-$parallel}
[[ $n =~ ^[1-9][0-9]*$ && $runs =~ ^[1-9][0-9]*$ && $parallel =~ ^[1-9][0-9]*$ && $redeploy_parallel =~ ^[1-9][0-9]*$ ]] ||
  die "--workers, --runs, --parallel and --redeploy-parallel take positive integers"
for v in "${variants[@]}"; do
  [[ $v =~ ^(builtin|openssl|openssl-nosync|nohash|manifest)$ ]] || die "unknown variant '$v'"
done

cleanup() {
  if [[ $keep == no && -n ${bench_dir:-} ]]; then bash "$testbed" down "$bench_dir" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
bench_setup "$dir" "$build" "$n"
dir=$bench_dir

# --- the variant script dirs ------------------------------------------------------
base=$dir/remote_steps.builtin.lua
RCH_CONFIG_DIR=$dir "$rch" scripts show rch/deploy/remote_steps.lua >"$base" ||
  die "cannot extract rch/deploy/remote_steps.lua from $rch"
python3 - "$base" "$dir/variants" <<'PY' || die "the built-in remote_steps.lua no longer has the lines the variants edit"
import os, sys
src = open(sys.argv[1]).read()
out = sys.argv[2]
PRE = """if [ -f "$f" ]; then echo "target_sha256=$(sha256sum "$f" | cut -d' ' -f1)"; fi"""
PRE_OPENSSL = ("""if [ -f "$f" ]; then if command -v openssl >/dev/null 2>&1; then """
               """h=$(openssl dgst -sha256 -r "$f" | cut -d' ' -f1); else h=$(sha256sum "$f" | cut -d' ' -f1); fi; """
               """echo "target_sha256=$h"; fi""")
PRE_MANIFEST = ("""m="$root/versions/v$target/manifest.json"\n"""
                """if [ -f "$f" ] && [ -f "$m" ]; then echo "target_sha256=$(sed -n 's/.*"sha256":"\\([0-9a-f]*\\)".*/\\1/p' "$m")"; """
                """elif [ -f "$f" ]; then echo "target_sha256=$(sha256sum "$f" | cut -d' ' -f1)"; fi""")
RECV = """got=$(tee "$tmp" | sha256sum | cut -d' ' -f1)"""
RECV_OPENSSL = ("""if command -v openssl >/dev/null 2>&1; then got=$(tee "$tmp" | openssl dgst -sha256 -r | cut -d' ' -f1); """
                """else got=$(tee "$tmp" | sha256sum | cut -d' ' -f1); fi""")
RECV_NOHASH = """cat > "$tmp"; got=$want"""
SYNC = """sync "$tmp" 2>/dev/null || true\n"""
for needle in (PRE, RECV, SYNC):
    assert needle in src, needle
# The transfer script comes first; later uploads (rch run's PUT) are left alone.
assert src.index(RECV) < src.index("function M.transfer")
edits = {
    "openssl": [(PRE, PRE_OPENSSL), (RECV, RECV_OPENSSL)],
    "openssl-nosync": [(PRE, PRE_OPENSSL), (RECV, RECV_OPENSSL), (SYNC, "")],
    "nohash": [(PRE, ""), (RECV, RECV_NOHASH), (SYNC, "")],
    "manifest": [(PRE, PRE_MANIFEST)],
}
for name, subs in edits.items():
    text = src
    for old, new in subs:
        text = text.replace(old, new, 1)
    os.makedirs(f"{out}/{name}/rch/deploy", exist_ok=True)
    open(f"{out}/{name}/rch/deploy/remote_steps.lua", "w").write(text)
PY
for v in "${variants[@]}"; do
  [[ $v == builtin ]] && continue
  RCH_CONFIG_DIR=$dir "$rch" --script-dir "$dir/variants/$v" scripts list | grep -q "rch/deploy/remote_steps.lua *$dir/variants/$v" ||
    die "variant $v is not picked up by --script-dir"
done

workers_csv=$(seq -s, -f 'w%g' 1 "$n")
results=$dir/results.csv
echo "variant,kind,round,seconds,load1,tag" >"$results"

timed() { # tag, command...
  local tag=$1 rc=0 t0 t1
  shift
  t0=$EPOCHREALTIME
  timeout 600 "$@" </dev/null >"$dir/runs/$tag.out" 2>"$dir/runs/$tag.err" || rc=$?
  t1=$EPOCHREALTIME
  ((rc == 0)) || die "$tag exited $rc: $*
$(tail -n 15 "$dir/runs/$tag.err")"
  run_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}
record() { # variant kind round tag
  local load1
  load1=$(cut -d' ' -f1 /proc/loadavg)
  echo "$1,$2,$3,$run_s,$load1,$4" >>"$results"
  say "round $3 $1 $2: ${run_s}s (load $load1)"
}
rch_deploy() { # variant tag parallel
  local -a sd=()
  [[ $1 == builtin ]] || sd=(--script-dir "$dir/variants/$1")
  timed "$2" "$rch" "${sd[@]}" fleet deploy --version "$ver" --no-toolchain --parallel "$3" \
    --worker "$workers_csv" --json
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= runs; r++)); do
  for v in "${variants[@]}"; do
    bench_wipe "$n"
    rch_deploy "$v" "$v-full-$r" "$parallel"
    bench_check_rch_result "$v full deploy" "$dir/runs/$v-full-$r.out" "$n" completed
    files=()
    for ((k = 1; k <= n; k++)); do files+=("$dir/w$k/root/bin/rch-wkr"); done
    bench_check_files "$v full deploy" "${files[@]}"
    record "$v" full "$r" "$v-full-$r"
    rch_deploy "$v" "$v-redeploy-$r" "$redeploy_parallel"
    bench_check_rch_result "$v redeploy" "$dir/runs/$v-redeploy-$r.out" "$n" skipped
    record "$v" redeploy "$r" "$v-redeploy-$r"
  done
  bench_wipe "$n"
  timed "clush-forced-$r" clush -S -f "$parallel" -w "w[1-$n]" -o "-F $cfg $forced_opts" --copy "$payload" --dest rch-wkr
  files=()
  for ((k = 1; k <= n; k++)); do files+=("$dir/w$k/root/rch-wkr"); done
  bench_check_files "clush --copy (forced)" "${files[@]}"
  record clush+f full "$r" "clush-forced-$r"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
bench_wipe "$n"

python3 - "$dir" "$results" "$n" "$parallel" "$runs" "$load_start" "$load_end" "$redeploy_parallel" "${variants[*]}" <<'PY' | tee "$dir/summary.md"
import calendar, csv, json, statistics, sys
from collections import defaultdict
from datetime import datetime
d, results, n, parallel, runs, load_start, load_end, redeploy_parallel, variants = sys.argv[1:]
rows = list(csv.DictReader(open(results)))
by = defaultdict(list)
for r in rows:
    by[(r["variant"], r["kind"])].append(r)
med = statistics.median
def iso(s):
    dt = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
    return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
def step(v, kind, name):
    xs = []
    for r in by[(v, kind)]:
        for w in json.load(open(f"{d}/runs/{r['tag']}.out"))["workers"]:
            for s in w["steps"]:
                if s["name"] == name:
                    xs.append(iso(s["completed_at"]) - iso(s["started_at"]))
    return f"{med(xs) * 1000:.0f} ms" if xs else "–"
def cell(v, kind):
    xs = [float(r["seconds"]) for r in by[(v, kind)]]
    return (f"{med(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})", med(xs)) if xs else ("–", None)
ref = cell("clush+f", "full")
print(f"### rch remote-step variants, {n} workers, --parallel {parallel}, median (min–max) of {runs} rounds\n")
print(f"| variant | full deploy, s | / clush forced | preflight per worker | transfer per worker | unchanged redeploy (--parallel {redeploy_parallel}), s | preflight per worker (redeploy) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for v in variants.split():
    full, redo = cell(v, "full"), cell(v, "redeploy")
    print(f"| {v} | {full[0]} | {full[1] / ref[1]:.2f}× | {step(v, 'full', 'preflight')} | {step(v, 'full', 'transfer')} "
          f"| {redo[0]} | {step(v, 'redeploy', 'preflight')} |")
print(f"| clush --copy, forced (reference) | {ref[0]} | 1.00× | | | | |")
loads = [float(r["load1"]) for r in rows]
print(f"\nLoad (1-min) after each run: min {min(loads):.2f}, median {med(loads):.2f}, max {max(loads):.2f}; "
      f"/proc/loadavg at start {load_start}, at end {load_end}.")
PY
