#!/usr/bin/env bash
# deploy_vs_peers.sh: `rch fleet deploy` against parallel-scp (pssh) and
# `clush --copy` (clustershell) on the sshd testbed (scripts/testbed.sh).
# Issue 6, "Benchmarks". Not a test: it prints a markdown table and exits 0,
# or exits 1 naming the tool and run that failed.
#
#   bash scripts/bench/deploy_vs_peers.sh [--workers "8 16 32"] [--runs 5]
#        [--parallel 8] [--dir /tmp/rch-bench-deploy] [--build DIR] [--keep]
#
# What it does (must run as root: it installs the peers with apt-get and wipes
# the worker roots, which belong to the testbed user rchtest):
#   1. installs pssh and clustershell if `parallel-scp` or `clush` is missing;
#   2. snapshots build/rch and build/rch-wkr into DIR/bin (the build tree is
#      shared and may be rebuilt while this runs);
#   3. starts max(--workers) sshd with scripts/testbed.sh; each worker's sftp
#      server starts in that worker's root (`sftp-server -d`), so a relative
#      scp destination lands in the right root for every host of one
#      parallel-scp / clush invocation (rch does not use sftp);
#   4. makes the payload: build/rch-wkr, stripped, with random bytes appended up to
#      15 MiB (an ELF ignores trailing data, `--version` still works), at
#      $RCH_HOME/versions/v<ver>/rch-wkr, so `rch fleet deploy --version <ver>`
#      ships it;
#   5. logs the negotiated key exchange and cipher of every tool (worker w1
#      briefly at LogLevel DEBUG1);
#   6. for each worker count N, --runs rounds of, interleaved:
#        rch      rch fleet deploy --version V --no-toolchain --parallel P --worker w1,…,wN
#        pscp     parallel-scp -p P -h hosts(N) -x "-F cfg" FILE rch-wkr
#        clush    clush -S -f P -w w[1-N] -o "-F cfg" --copy FILE --dest rch-wkr
#        pscp+f   pscp with -o KexAlgorithms=curve25519-sha256 -o Ciphers=aes128-gcm@openssh.com
#        clush+f  clush with the same two options
#      every worker root wiped (as root) and `sync` before each run; after each
#      run the sha256 of the file on every one of the N workers is checked;
#      sshd "Accepted publickey" lines are counted per worker per run;
#   7. redeploy of an unchanged fleet of max(N): one full deploy, then --runs
#      timed deploys that must report every worker Skipped;
#   8. prints the tables (also written to DIR/summary.md, raw data DIR/results.csv).
#
# cfg (DIR/ssh_config) holds Host w1..wN -> 127.0.0.1:port for clush, the
# testbed key and known_hosts, BatchMode, then `Include /etc/ssh/ssh_config`,
# so the peers otherwise run with Debian's client defaults (sntrup761 key
# exchange, chacha20-poly1305; parallel-scp also always passes `scp -qC`).
# rch's SSH settings are fixed in core/ssh/session.cpp (aes128-gcm first,
# libssh's default curve25519-sha256), i.e. already the "forced" ones.
set -euo pipefail
umask 022

bench_name=deploy_vs_peers
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
workers_arg="8 16 32"
runs=5
parallel=8
dir=/tmp/rch-bench-deploy
build=$repo/build
keep=no
readonly run_timeout_s=600

usage() {
  sed -n '7,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

while (($# > 0)); do
  case $1 in
    --workers) workers_arg=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --parallel) parallel=${2:?}; shift 2 ;;
    --dir) dir=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --keep) keep=yes; shift ;;
    -h | --help) usage ;;
    *) echo "deploy_vs_peers: unknown argument '$1'" >&2; usage ;;
  esac
done

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $parallel =~ ^[1-9][0-9]*$ ]] || die "--parallel must be a positive integer"
read -r -a counts <<<"$workers_arg"
((${#counts[@]} > 0)) || die "--workers is empty"
max_n=0
for n in "${counts[@]}"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "--workers: '$n' is not a positive integer"
  ((n > max_n)) && max_n=$n
done

cleanup() {
  if [[ $keep == no && -n ${bench_dir:-} ]]; then bash "$testbed" down "$bench_dir" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
# Steps 1-4: peers, binaries, testbed (sftp start dirs), payload, ssh config.
bench_setup "$dir" "$build" "$max_n"
dir=$bench_dir
rm -f "$dir/results.csv" "$dir/summary.md"
for n in "${counts[@]}"; do bench_hosts_file "$n" >/dev/null; done

# Runs tool $1 on N=$2 workers; sets run_s, run_conn_min/max, run_rss_kb.
run_tool() {
  local tool=$1 n=$2 tag=$3 out=$dir/runs/$3 t0 t1 rc=0
  local -a before after cmd
  mapfile -t before < <(bench_accepted_counts "$n")
  local workers_csv
  workers_csv=$(seq -s, -f 'w%g' 1 "$n")
  case $tool in
    rch | rch-redeploy)
      cmd=(/usr/bin/time -f %M -o "$out.rss" "$rch" fleet deploy --version "$ver" --no-toolchain
        --parallel "$parallel" --worker "$workers_csv" --json) ;;
    pscp) cmd=(parallel-scp -p "$parallel" -h "$dir/hosts.$n" -x "-F $cfg" "$payload" rch-wkr) ;;
    pscp+f) cmd=(parallel-scp -p "$parallel" -h "$dir/hosts.$n" -x "-F $cfg $forced_opts" "$payload" rch-wkr) ;;
    clush) cmd=(clush -S -f "$parallel" -w "w[1-$n]" -o "-F $cfg" --copy "$payload" --dest rch-wkr) ;;
    clush+f) cmd=(clush -S -f "$parallel" -w "w[1-$n]" -o "-F $cfg $forced_opts" --copy "$payload" --dest rch-wkr) ;;
    *) die "unknown tool $tool" ;;
  esac
  t0=$EPOCHREALTIME
  timeout "$run_timeout_s" "${cmd[@]}" </dev/null >"$out.out" 2>"$out.err" || rc=$?
  t1=$EPOCHREALTIME
  echo "$t0 $t1" >"$out.time"
  if ((rc != 0)); then
    die "$tool on $n workers ($tag) exited $rc: ${cmd[*]}
--- stdout (tail):
$(tail -n 15 "$out.out")
--- stderr (tail):
$(tail -n 15 "$out.err")"
  fi
  run_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  mapfile -t after < <(bench_accepted_counts "$n")
  local k d
  run_conn_min=999999 run_conn_max=0
  for ((k = 0; k < n; k++)); do
    d=$((after[k] - before[k]))
    ((d < run_conn_min)) && run_conn_min=$d
    ((d > run_conn_max)) && run_conn_max=$d
  done
  run_rss_kb=
  [[ -f $out.rss ]] && run_rss_kb=$(tail -n 1 "$out.rss")
  # Every one of the N workers must hold the payload, byte for byte.
  local -a files=()
  for ((k = 1; k <= n; k++)); do
    case $tool in
      rch*) files+=("$dir/w$k/root/bin/rch-wkr") ;; # -> ../current/rch-wkr -> versions/v<ver>/rch-wkr
      *) files+=("$dir/w$k/root/rch-wkr") ;;
    esac
  done
  bench_check_files "$tool on $n workers ($tag)" "${files[@]}"
  case $tool in
    rch) bench_check_rch_result "$tool on $n workers ($tag)" "$out.out" "$n" completed ;;
    rch-redeploy) bench_check_rch_result "$tool on $n workers ($tag)" "$out.out" "$n" skipped ;;
  esac
}

results=$dir/results.csv
echo "n,round,tool,seconds,conn_min,conn_max,rss_kb,load1,tag" >"$results"
record() { # n round tool
  local load1
  load1=$(cut -d' ' -f1 /proc/loadavg)
  echo "$1,$2,$3,$run_s,$run_conn_min,$run_conn_max,$run_rss_kb,$load1,$4" >>"$results"
  say "N=$1 round $2 $3: ${run_s}s (connections/worker $run_conn_min..$run_conn_max${run_rss_kb:+, rss ${run_rss_kb} KB}, load $load1)"
}

# --- 5. negotiated algorithms ----------------------------------------------
algos=$dir/algorithms.txt
: >"$algos"
sed -i 's/^LogLevel VERBOSE/LogLevel DEBUG1/' "$dir/w1/sshd_config"
bench_restart_worker 1
algo_of() { # label, command...
  local label=$1 lines
  shift
  : >"$dir/w1/sshd.log"
  "$@" </dev/null >/dev/null 2>&1 || die "negotiation probe for $label failed: $*"
  lines=$(grep -E 'kex: (algorithm|client->server cipher):' "$dir/w1/sshd.log" | head -n 2 |
    sed -E 's/.*kex: algorithm: ([^ ]+).*/kex \1/; s/.*client->server cipher: ([^ ]+) MAC: ([^ ]+) compression: ([^ ]+).*/cipher \1, compression \3/' |
    paste -sd';' -)
  printf '| %s | %s |\n' "$label" "${lines//;/, }" >>"$algos"
}
echo "rchtest@127.0.0.1:$(<"$dir/w1/port")" >"$dir/hosts.algo"
algo_of "rch (libssh $(dpkg-query -W -f '${Version}' libssh-4 2>/dev/null || echo '?'))" "$rch" fleet status --worker w1
algo_of "parallel-scp (OpenSSH $(ssh -V 2>&1 | sed -E 's/^OpenSSH_([^ ,]+).*/\1/'))" \
  parallel-scp -h "$dir/hosts.algo" -x "-F $cfg" "$payload" rch-wkr
algo_of "clush" clush -S -w w1 -o "-F $cfg" --copy "$payload" --dest rch-wkr
algo_of "parallel-scp, forced" parallel-scp -h "$dir/hosts.algo" -x "-F $cfg $forced_opts" "$payload" rch-wkr
algo_of "clush, forced" clush -S -w w1 -o "-F $cfg $forced_opts" --copy "$payload" --dest rch-wkr
sed -i 's/^LogLevel DEBUG1/LogLevel VERBOSE/' "$dir/w1/sshd_config"
bench_restart_worker 1
say "negotiated algorithms:"
cat "$algos" >&2

# --- 6. the interleaved comparison -------------------------------------------
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
bench_start=$SECONDS
tools=(rch pscp clush pscp+f clush+f)
for n in "${counts[@]}"; do
  for ((r = 1; r <= runs; r++)); do
    for tool in "${tools[@]}"; do
      bench_wipe "$max_n"
      tag=$tool-$n-$r
      run_tool "$tool" "$n" "$tag"
      record "$n" "$r" "$tool" "$tag"
    done
  done
done

# --- 7. unchanged-fleet redeploy ---------------------------------------------
bench_wipe "$max_n"
run_tool rch "$max_n" "rch-initial-$max_n"
record "$max_n" 0 rch-initial "rch-initial-$max_n"
for ((r = 1; r <= runs; r++)); do
  tag=rch-redeploy-$max_n-$r
  run_tool rch-redeploy "$max_n" "$tag"
  record "$max_n" "$r" rch-redeploy "$tag"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
bench_wipe "$max_n"

# --- 8. summary -----------------------------------------------------------------
python3 - "$dir" "$results" "$algos" "$parallel" "$runs" "$payload_bytes" "$elf_size" \
  "$load_start" "$load_end" "$((SECONDS - bench_start))" "$rch_commit" "$rch_dirty" "$ver" "$max_n" <<'PY' | tee "$dir/summary.md"
import csv, json, statistics, sys
from collections import defaultdict
from datetime import datetime

(d, results, algos, parallel, runs, payload_bytes, elf_size, load_start, load_end, secs,
 commit, dirty, ver, max_n) = sys.argv[1:]
payload_bytes, elf_size, max_n = int(payload_bytes), int(elf_size), int(max_n)
rows = list(csv.DictReader(open(results)))
by = defaultdict(list)
for r in rows:
    by[(int(r["n"]), r["tool"])].append(r)
med = lambda xs: statistics.median(xs)
def secs_of(n, tool): return [float(r["seconds"]) for r in by[(n, tool)]]
def cell(n, tool):
    xs = secs_of(n, tool)
    return f"{med(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})" if xs else "–"

ns = sorted({int(r["n"]) for r in rows if r["tool"] == "rch"})
peers = ["pscp", "clush", "pscp+f", "clush+f"]
names = {"pscp": "parallel-scp", "clush": "clush --copy", "pscp+f": "parallel-scp, forced",
         "clush+f": "clush --copy, forced"}
print(f"### rch fleet deploy vs bare copies: {payload_bytes / 1e6:.1f} MB payload, --parallel {parallel}, "
      f"median (min–max) wall seconds of {runs} interleaved runs\n")
print("| workers | rch deploy (full pipeline) | " + " | ".join(names[p] for p in peers)
      + " | best peer | rch / best peer | rch / best as shipped | rch / best forced |")
print("|---:|---:|" + "---:|" * len(peers) + "---|---:|---:|---:|")
for n in ns:
    rch = med(secs_of(n, "rch"))
    meds = {p: med(secs_of(n, p)) for p in peers}
    best = min(meds, key=meds.get)
    shipped = min(meds["pscp"], meds["clush"])
    forced = min(meds["pscp+f"], meds["clush+f"])
    print(f"| {n} | {cell(n, 'rch')} | " + " | ".join(cell(n, p) for p in peers)
          + f" | {names[best]} {meds[best]:.2f} | **{rch / meds[best]:.2f}×** | {rch / shipped:.2f}× | {rch / forced:.2f}× |")
print()
print("Aggregate rate (N × payload / median wall), MB/s: " + "; ".join(
    f"N={n}: rch {n * payload_bytes / 1e6 / med(secs_of(n, 'rch')):.0f}, best peer "
    f"{n * payload_bytes / 1e6 / min(med(secs_of(n, p)) for p in peers):.0f}" for n in ns))
print()

# Where rch's time goes, from its --json result (ms timestamps) and our wall clock.
import calendar
def iso(s):
    dt = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
    return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
print("### Where rch's time goes (medians over runs; per-worker steps: median over workers and runs)\n")
print("| workers | wall | start-up (exec → first worker) | preflight (connect+auth+probe) | transfer | install | verify | per worker total | end (last worker → exit) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
def breakdown(tool, n):
    starts, ends, steps, totals, walls = [], [], defaultdict(list), [], []
    for r in by[(n, tool)]:
        tag = r["tag"]
        t0, t1 = map(float, open(f"{d}/runs/{tag}.time").read().split())
        res = json.load(open(f"{d}/runs/{tag}.out"))
        ws = res["workers"]
        starts.append(min(iso(w["started_at"]) for w in ws) - t0)
        ends.append(t1 - max(iso(w["completed_at"]) for w in ws))
        walls.append(t1 - t0)
        for w in ws:
            totals.append(iso(w["completed_at"]) - iso(w["started_at"]))
            for s in w["steps"]:
                steps[s["name"]].append(iso(s["completed_at"]) - iso(s["started_at"]))
    f = lambda xs: f"{med(xs) * 1000:.0f} ms" if xs else "–"
    return (f"{med(walls):.2f} s", f(starts), f(steps["preflight"]), f(steps["transfer"]), f(steps["install"]),
            f(steps["verify"]), f(totals), f(ends))
for n in ns:
    print(f"| {n} | " + " | ".join(breakdown("rch", n)) + " |")
if by[(max_n, "rch-redeploy")]:
    print(f"| {max_n} (unchanged) | " + " | ".join(breakdown("rch-redeploy", max_n)) + " |")
print()

red = secs_of(max_n, "rch-redeploy")
print("### Other figures\n")
print(f"- Redeploy of an unchanged fleet of {max_n} (every worker Skipped): median **{med(red):.2f} s** "
      f"({min(red):.2f}–{max(red):.2f}, {len(red)} runs).")
def conns(tools):
    rs = [r for r in rows if r["tool"] in tools]
    return min(int(r["conn_min"]) for r in rs), max(int(r["conn_max"]) for r in rs), len(rs)
for label, tools in (("rch full deploy", ("rch", "rch-initial")), ("rch unchanged redeploy", ("rch-redeploy",)),
                     ("parallel-scp", ("pscp", "pscp+f")), ("clush --copy", ("clush", "clush+f"))):
    lo, hi, k = conns(tools)
    print(f"- SSH connections per worker per run ({label}, sshd `Accepted publickey` lines, {k} runs): "
          + (f"**{lo}**" if lo == hi else f"{lo}–{hi}"))
rss = [int(r["rss_kb"]) for r in rows if r["tool"] == "rch" and int(r["n"]) == max_n and r["rss_kb"]]
rss_red = [int(r["rss_kb"]) for r in rows if r["tool"] == "rch-redeploy" and r["rss_kb"]]
if rss:
    print(f"- Peak RSS of rch at {max_n} workers (`/usr/bin/time -f %M`): full deploy median "
          f"**{med(rss) / 1024:.1f} MiB** (max {max(rss) / 1024:.1f}); unchanged redeploy median "
          f"{med(rss_red) / 1024:.1f} MiB.")
loads = [float(r["load1"]) for r in rows]
print(f"- Load (1-min average) after each run: min {min(loads):.2f}, median {med(loads):.2f}, max {max(loads):.2f}; "
      f"/proc/loadavg at start {load_start}, at end {load_end}; benchmark took {int(secs)} s.")
print(f"- Payload: {payload_bytes} bytes: rch-wkr {ver} ({elf_size} bytes of ELF) + random bytes; "
      f"rch at commit {commit}" + (f" with {dirty} uncommitted paths in the work tree" if int(dirty) else "") + ".")
print()
print("### Negotiated algorithms (sshd DEBUG1 on w1)\n")
print("| client | key exchange, cipher |\n|---|---|")
print(open(algos).read().rstrip())
PY
