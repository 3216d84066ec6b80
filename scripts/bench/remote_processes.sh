#!/usr/bin/env bash
# remote_processes.sh: what one rch command costs a worker in processes (issue
# 16: at fleet scale a deploy's CPU is mostly the workers' process starts,
# about a millisecond each on this machine). strace follows one testbed
# worker's sshd while rch works on that worker alone, and counts every
# process started on it (forks) and every program run (execs), by program.
# Exact, not timed: it holds on a busy machine too.
#
#   bash scripts/bench/remote_processes.sh [--build DIR] [--dir /tmp/rch-bench-procs]
#
# Scenarios, each on w1 only: `fleet status`; an unchanged redeploy (skipped);
# a version-bump upgrade (rch-wkr -> tests/rch-wkr-next, sent as a zstd patch).
set -euo pipefail
bench_name=remote_processes
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$repo/build dir=/tmp/rch-bench-procs
while (($# > 0)); do
  case $1 in
    --build) build=${2:?}; shift 2 ;;
    --dir) dir=${2:?}; shift 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
command -v strace >/dev/null || die "strace is not installed (apt-get install strace)"
[[ -x $build/tests/rch-wkr-next ]] || die "no $build/tests/rch-wkr-next (cmake --build $build)"
bench_setup "$dir" "$build" 2
trap 'bash "$testbed" down "$bench_dir" >/dev/null 2>&1 || true' EXIT
cp "$bench_dir/bin/rch-wkr" "$payload" # the real agent: this benchmark is about processes, not bytes
next=$("$build/tests/rch-wkr-next" --version | awk '{print $2; exit}')
mkdir -p "$RCH_HOME/versions/v$next"
cp "$build/tests/rch-wkr-next" "$RCH_HOME/versions/v$next/rch-wkr"
sshd_pid=$(<"$bench_dir/w1/sshd.pid")

# traced LABEL CMD…: runs CMD with w1's sshd traced; prints "LABEL forks execs top-programs".
traced() {
  local label=$1 log=$bench_dir/runs/$1.strace tracer forks execs top
  shift
  strace -f -qq -e trace=execve,clone,clone3,fork,vfork -o "$log" -p "$sshd_pid" &
  tracer=$!
  sleep 1 # attached
  "$@" >"$bench_dir/runs/$label.out" 2>"$bench_dir/runs/$label.err" || die "$label: rch exited $?"
  sleep 1 # the sessions' last processes end after rch closes them
  kill "$tracer"
  wait "$tracer" 2>/dev/null || true
  forks=$(grep -cE '(clone3?|v?fork)\(' "$log" || true)
  execs=$(grep -c 'execve(' "$log" || true)
  top=$(grep -o 'execve("[^"]*"' "$log" | sed 's|.*/||; s|"$||' | sort | uniq -c | sort -rn | head -n 6 |
    awk '{printf "%s%s %d", (NR > 1 ? ", " : ""), $2, $1}')
  printf '| %s | %d | %d | %s |\n' "$label" "$forks" "$execs" "$top"
}
"$rch" fleet deploy --no-toolchain --worker w1 --json >"$bench_dir/runs/base.json" || die "the base install failed"
echo "| w1, one command of rch $rch_commit | forks | execs | most run |"
echo "|---|---:|---:|---|"
traced status "$rch" fleet status --worker w1
traced unchanged-redeploy "$rch" fleet deploy --no-toolchain --worker w1
traced version-bump "$rch" fleet deploy --no-toolchain --worker w1 --version "$next" --json
grep -q "sent as zstd patch" "$bench_dir/runs/version-bump.out" ||
  die "the upgrade was not sent as a patch: $(tail -n 3 "$bench_dir/runs/version-bump.out")"
