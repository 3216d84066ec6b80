#!/usr/bin/env bash
# pull_bytes.sh: what rch's own SSH connections carry per worker when the
# workers pull the release tarball themselves (--source pull), against a
# push of the same rch-wkr (zstd-compressed, and the whole file). Issue 16,
# "Benchmarks"; target: < 64 KB sent by the controller per worker. Not a
# test: it prints a markdown table and exits 0, or exits 1 naming the run
# that failed.
#
#   bash scripts/bench/pull_bytes.sh [--workers 32] [--runs 3] [--parallel 8]
#        [--dir /tmp/rch-bench-pull] [--build DIR] [--keep]
#
# Bytes are counted by a TCP proxy in front of every worker's sshd
# (scripts/bench/count_proxy.py; workers.toml and known_hosts point rch at
# it): the SSH stream's payload, both directions, for every connection rch
# opens to a worker (handshake, authentication, commands, uploads). The
# workers' HTTP downloads do not pass through it, which is why interface
# counters would not do here: both cross loopback.
#
# The release is this tree at the version of BUILD/rch-wkr, built by
# scripts/make-release.sh, minisigned with a key made here and served over
# HTTP on 127.0.0.1 by tests/unit/https_server.py (RCH_RELEASE_BUILD_DIR:
# make-release's build dir, kept between benchmark runs). Each run starts from
# empty worker roots (first install), interleaved:
#   pull   rch fleet deploy --source pull
#   zstd   rch fleet deploy --source push of the release's rch-wkr (compressed: the default)
#   full   the same with [deploy] compress = "never" (the whole file)
set -euo pipefail
umask 022

bench_name=pull_bytes
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
n=32
runs=3
parallel=8
dir=/tmp/rch-bench-pull
build=$repo/build
keep=no
while (($# > 0)); do
  if bench_option "$@"; then shift "$bench_shift"; continue; fi
  case $1 in
    -h | --help) sed -n '9,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
for v in n runs parallel; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$v must be a positive integer"; done
((EUID == 0)) || die "run as root (the testbed user's worker roots are wiped between runs)"
command -v minisign >/dev/null || die "minisign is not installed: run scripts/bootstrap.sh"
[[ -x $build/rch && -x $build/rch-wkr ]] || die "no $build/rch or $build/rch-wkr (cmake --build $build)"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ $keep == no ]]; then bash "$testbed" down "$dir" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
rm -rf "${dir:?}"/{bin,home,state,data,cache,runs,srv,cfg-*} "$dir"/{results.csv,counts.json,http.port}
mkdir -p "$dir/bin" "$dir/runs" "$dir/srv/releases"
cp "$build/rch" "$build/rch-wkr" "$dir/bin/"
rch=$dir/bin/rch
ver=$("$dir/bin/rch-wkr" --version | awk '{print $2; exit}')
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain 2>/dev/null | wc -l)
bash "$testbed" up "$n" "$dir" >&2

# The release, its server, and the proxy in front of every worker.
python3 "$repo/tests/unit/https_server.py" "$dir/http.port" "$dir/srv" >"$dir/http.out" 2>&1 &
pids+=($!)
for ((i = 0; i < 200; i++)); do [[ -s $dir/http.port ]] && break; sleep 0.05; done
base=http://127.0.0.1:$(<"$dir/http.port")
[[ -f $dir/key.sec ]] || minisign -G -W -p "$dir/key.pub" -s "$dir/key.sec" >/dev/null
say "building release $ver (scripts/make-release.sh)"
RCH_RELEASE_BASE_URL=$base/releases RCH_MINISIGN_SECRET_KEY=$dir/key.sec \
  RCH_RELEASE_BUILD_DIR=${RCH_RELEASE_BUILD_DIR:-$dir/release-build} \
  bash "$repo/scripts/make-release.sh" "$ver" "$dir/srv/releases/v$ver" 2>"$dir/make-release.err" ||
  die "make-release: $(tail -n 5 "$dir/make-release.err")"
bash "$repo/scripts/make-releases-index.sh" "$dir/srv/releases" 2>/dev/null || die "make-releases-index"
tarball=$dir/srv/releases/v$ver/rch-v$ver-x86_64-unknown-linux-gnu.tar.gz
tar -xzf "$tarball" -C "$dir/bin" rch-wkr
wkr_size=$(stat -c %s "$dir/bin/rch-wkr")
wkr_sha=$(sha256sum "$dir/bin/rch-wkr" | cut -d' ' -f1)

ports=()
for ((k = 1; k <= n; k++)); do ports+=("$(<"$dir/w$k/port")"); done
python3 "$repo/scripts/bench/count_proxy.py" "$dir/counts.json" "${ports[@]}" &
pids+=($!)
for ((i = 0; i < 200; i++)); do [[ -s $dir/counts.json ]] && break; sleep 0.05; done
# workers.toml and known_hosts with every worker behind its proxy port.
python3 - "$dir" <<'PY'
import json, re, sys
d = sys.argv[1]
m = json.load(open(d + "/counts.json"))["ports"]
for name in ("workers.toml", "known_hosts"):
    text = open(f"{d}/{name}").read()
    if name == "workers.toml":
        text = re.sub(r"(?m)^port = (\d+)", lambda x: "port = %d" % m[x.group(1)], text)
    else:
        text = re.sub(r"\[127\.0\.0\.1\]:(\d+)", lambda x: "[127.0.0.1]:%d" % m[x.group(1)], text)
    open(f"{d}/{name}.proxied", "w").write(text)
PY
pubkey=$(tail -n 1 "$dir/key.pub")
for mode in pull zstd full; do
  mkdir -p "$dir/cfg-$mode"
  cp "$dir/workers.toml.proxied" "$dir/cfg-$mode/workers.toml"
  {
    printf '[defaults]\nknown_hosts = "%s/known_hosts.proxied"\n' "$dir"
    printf '[update]\nurl = "%s/releases/releases.json"\nminisign_pubkey = "%s"\n' "$base" "$pubkey"
    case $mode in full) printf '[deploy]\ncompress = "never"\n' ;; esac
  } >"$dir/cfg-$mode/config.toml"
done
export RCH_STATE_DIR=$dir/state RCH_DATA_DIR=$dir/data RCH_HOME=$dir/home RCH_CACHE_DIR=$dir/cache NO_COLOR=1
mkdir -p "$RCH_HOME/versions/v$ver"
cp "$dir/bin/rch-wkr" "$RCH_HOME/versions/v$ver/rch-wkr" # what push sends: the release's own rch-wkr

counts() { python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); print(c["open"], sum(c["sent"].values()), sum(c["received"].values()))' "$dir/counts.json"; }
wipe() {
  local k
  for ((k = 1; k <= n; k++)); do find "$dir/w$k/root" -mindepth 1 -delete; done
  sync
}
workers_csv=$(seq -s, -f 'w%g' 1 "$n")
echo "mode,round,seconds,sent,received" >"$dir/results.csv"
measure() { # mode round
  local mode=$1 round=$2 tag=$1-$2 open s0 r0 s1 r1 t0 t1 i source=push
  [[ $mode == pull ]] && source=pull
  wipe
  read -r open s0 r0 < <(counts)
  ((open == 0)) || die "$tag: $open connections still open before the run"
  t0=$EPOCHREALTIME
  RCH_CONFIG_DIR=$dir/cfg-$mode timeout 600 "$rch" fleet deploy --source "$source" --no-toolchain \
    --parallel "$parallel" --worker "$workers_csv" --json </dev/null >"$dir/runs/$tag.out" 2>"$dir/runs/$tag.err" ||
    die "$tag: rch exited $?: $(tail -n 5 "$dir/runs/$tag.err")"
  t1=$EPOCHREALTIME
  # rch has exited: its connections are closing; the proxy writes the totals when the last one ends.
  for ((i = 0; i < 100; i++)); do read -r open s1 r1 < <(counts); ((open == 0)) && break; sleep 0.05; done
  ((open == 0)) || die "$tag: connections still open 5 s after rch exited"
  python3 - "$dir/runs/$tag.out" "$n" <<'PY' || die "$tag: not every worker completed, see $dir/runs/$tag.out"
import json, sys
r = json.load(open(sys.argv[1]))
sys.exit(0 if r["outcome"] == "completed" and r["counts"]["completed"] == int(sys.argv[2]) else 1)
PY
  local k bad=""
  for ((k = 1; k <= n; k++)); do
    [[ $(sha256sum "$dir/w$k/root/bin/rch-wkr" | cut -d' ' -f1) == "$wkr_sha" ]] || bad+=" w$k"
  done
  [[ -z $bad ]] || die "$tag: wrong rch-wkr on$bad"
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  echo "$mode,$round,$secs,$((s1 - s0)),$((r1 - r0))" >>"$dir/results.csv"
  say "$tag: ${secs}s, rch sent $(((s1 - s0) / n)) bytes per worker, received $(((r1 - r0) / n))"
}
started=$SECONDS
for ((r = 1; r <= runs; r++)); do
  for mode in pull zstd full; do measure "$mode" "$r"; done
done
tar_size=$(stat -c %s "$tarball")
python3 - "$dir/results.csv" "$n" "$parallel" "$runs" "$ver" "$wkr_size" "$tar_size" "$commit" "$dirty" \
  "$((SECONDS - started))" <<'PY' | tee "$dir/summary.md"
import csv, statistics, sys
from collections import defaultdict
results, n, parallel, runs, ver, wkr, tar, commit, dirty, secs = sys.argv[1:]
n = int(n)
by = defaultdict(list)
for r in csv.DictReader(open(results)):
    by[r["mode"]].append(r)
med = statistics.median
names = {"pull": "--source pull (workers fetch the tarball)", "zstd": "--source push, zstd-compressed (default)",
         "full": "--source push, whole file"}
print(f"### First install of rch-wkr {ver} ({int(wkr):,} bytes; release tarball {int(tar):,} bytes) on {n} workers, "
      f"--parallel {parallel}: bytes of rch's SSH connections per worker (TCP payload through a counting proxy), "
      f"median of {runs} interleaved runs\n")
print("| how | sent by rch per worker | received per worker | wall s (min–max) |")
print("|---|---:|---:|---:|")
for m in ("pull", "zstd", "full"):
    rs = by[m]
    s = [float(r["seconds"]) for r in rs]
    print(f"| {names[m]} | {med(int(r['sent']) for r in rs) / n:,.0f} | {med(int(r['received']) for r in rs) / n:,.0f} "
          f"| {med(s):.2f} ({min(s):.2f}–{max(s):.2f}) |")
print()
print(f"rch at commit {commit}" + (f" with {dirty} uncommitted paths" if int(dirty) else "") + f"; benchmark took {secs} s.")
PY
