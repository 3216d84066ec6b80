#!/usr/bin/env bash
# E2E tests of the worker agent binary ($RCH_WKR): version, health JSON,
# drain/undrain with real jobs, exec exit codes, leases freed by kill -9, and
# the static-runtime link check. Every check fails the test when it fails.
set -euo pipefail

: "${RCH_WKR:?set RCH_WKR to the rch-wkr binary under test}"

work=$(mktemp -d)
root="$work/root"
mkdir -p "$root"
background=()
cleanup() {
  for p in "${background[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
wkr() { "$RCH_WKR" --root "$root" "$@"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# One field of `health --json`, printed by python3 (Python spelling for bools).
health_field() {
  wkr health --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# Waits (up to 5 s) until health reports $1 active builds.
wait_active() {
  local want=$1 i got=""
  for i in $(seq 50); do
    got=$(health_field active_builds)
    [[ $got == "$want" ]] && return 0
    sleep 0.1
  done
  fail "expected $want active builds, health says $got"
}

# The job pid recorded in the lease of rch-wkr process $1 (waits until written).
job_pid() {
  local i pid=""
  for i in $(seq 50); do
    pid=$(sed -n 's/.*"job_pid":\([0-9]*\).*/\1/p' "$root/state/leases/$1"-*.lease 2>/dev/null | head -1)
    [[ -n $pid ]] && { echo "$pid"; return 0; }
    sleep 0.1
  done
  fail "no lease of rch-wkr $1 with a job_pid in $root/state/leases"
}

echo "--- --version"
out=$("$RCH_WKR" --version)
[[ $out =~ ^rch-wkr\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "--version printed '$out'"

echo "--- help and usage errors"
"$RCH_WKR" --help | grep -q 'drain \[--timeout S\]' || fail "--help does not list drain"
"$RCH_WKR" help | grep -q 'exec \[--\] CMD' || fail "help does not list exec"
rc=0; "$RCH_WKR" frobnicate 2>"$work/err" || rc=$?
[[ $rc == 2 ]] || fail "unknown command exited $rc, want 2"
grep -q "unknown command 'frobnicate'" "$work/err" || fail "unknown command message: $(cat "$work/err")"
rc=0; "$RCH_WKR" --bogus 2>/dev/null || rc=$?
[[ $rc == 2 ]] || fail "unknown global flag exited $rc, want 2"
rc=0; wkr health --bogus 2>/dev/null || rc=$?
[[ $rc == 2 ]] || fail "unknown health flag exited $rc, want 2"
rc=0; wkr drain --timeout soon 2>/dev/null || rc=$?
[[ $rc == 2 ]] || fail "bad --timeout exited $rc, want 2"

echo "--- health --json"
wkr health --json >"$work/health.json" || fail "health --json exited non-zero on a healthy root"
python3 - "$work/health.json" "$root" <<'EOF' || fail "health --json: $(cat "$work/health.json")"
import json, sys
h = json.load(open(sys.argv[1]))
want = {"version": str, "draining": bool, "active_builds": int, "disk_free_mb": int, "ok": bool, "root": str}
for key, kind in want.items():
    assert key in h, f"missing {key}"
    assert type(h[key]) is kind, f"{key} is {type(h[key]).__name__}"
assert h["ok"] is True and h["draining"] is False and h["active_builds"] == 0, h
assert h["disk_free_mb"] > 0, h
assert h["root"] == sys.argv[2], h
assert "error" not in h, h
EOF
v=$(health_field version)
[[ "rch-wkr $v" == "$("$RCH_WKR" --version)" ]] || fail "health version $v differs from --version"
RCH_WKR_ROOT="$root" "$RCH_WKR" health --json | grep -q "\"root\":\"$root\"" || fail "RCH_WKR_ROOT not used"

echo "--- drain waits for a 2 s job"
start=$(now_ms)
"$RCH_WKR" --root "$root" exec -- sh -c 'sleep 2; touch "$1"' sh "$work/job.done" &
job=$!
background+=("$job")
wait_active 1
wkr drain --timeout 10 2>"$work/drain.err" || fail "drain exited $? while a 2 s job ran"
total_ms=$(( $(now_ms) - start ))
# The job's own marker, not a stopwatch: on a loaded machine the job may
# start late, but drain must never return before it has ended.
[[ -e $work/job.done ]] || fail "drain returned before the job ended"
(( total_ms >= 2000 )) || fail "drain finished ${total_ms} ms after a 2 s job started"
grep -q '^draining: 1 active build' "$work/drain.err" || fail "no progress line: $(cat "$work/drain.err")"
rc=0; wait "$job" || rc=$?
[[ $rc == 0 ]] || fail "the drained job exited $rc"
[[ $(health_field draining) == True ]] || fail "not draining after drain"

echo "--- exec refused while draining"
rc=0; wkr exec -- true 2>"$work/err" || rc=$?
[[ $rc == 75 ]] || fail "exec while draining exited $rc, want 75"
grep -q 'rch-wkr: draining, not accepting new jobs' "$work/err" || fail "refusal message: $(cat "$work/err")"
[[ -z $(ls -A "$root/state/leases") ]] || fail "a refused exec left a lease"

echo "--- undrain, exit status"
wkr undrain || fail "undrain exited $?"
[[ $(health_field draining) == False ]] || fail "still draining after undrain"
rc=0; wkr exec -- sh -c 'exit 7' || rc=$?
[[ $rc == 7 ]] || fail "exec of 'exit 7' exited $rc"
rc=0; wkr exec -- sh -c 'kill -TERM $$' || rc=$?
[[ $rc == 143 ]] || fail "exec of a job killed by SIGTERM exited $rc, want 143"
rc=0; wkr exec -- rch-no-such-command-xyz 2>/dev/null || rc=$?
[[ $rc == 125 ]] || fail "exec of a missing command exited $rc, want 125"

echo "--- drain times out on a 30 s job"
"$RCH_WKR" --root "$root" exec -- sleep 30 &
job=$!
background+=("$job")
wait_active 1
drain_start=$(now_ms)
rc=0; wkr drain --timeout 1 --json >"$work/drain.json" 2>"$work/drain.err" || rc=$?
drain_ms=$(( $(now_ms) - drain_start ))
[[ $rc == 3 ]] || fail "drain --timeout 1 exited $rc, want 3"
(( drain_ms >= 900 && drain_ms < 5000 )) || fail "drain --timeout 1 took ${drain_ms} ms"
grep -q 'timed out.*1 active build still running' "$work/drain.err" || fail "timeout message: $(cat "$work/drain.err")"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["drained"] is False and d["active_builds"] == 1, d' \
  "$work/drain.json" || fail "drain --json on timeout: $(cat "$work/drain.json")"

echo "--- SIGTERM to rch-wkr reaches the job"
wkr undrain
"$RCH_WKR" --root "$root" exec -- sleep 30 &
term_job=$!
background+=("$term_job")
wait_active 2
term_pid=$(job_pid "$term_job")
kill -TERM "$term_job"
rc=0; wait "$term_job" || rc=$?
[[ $rc == 143 ]] || fail "exec after SIGTERM exited $rc, want 143"
sleep 0.2
if kill -0 "$term_pid" 2>/dev/null; then
  kill -9 "$term_pid"
  fail "SIGTERM was not forwarded: job $term_pid outlived rch-wkr"
fi
wait_active 1

echo "--- kill -9 frees the lease"
pid=$(job_pid "$job")
kill -0 "$pid" || fail "job $pid from the lease is not running"
kill -9 "$job"
rc=0; wait "$job" 2>/dev/null || rc=$?
[[ $rc == 137 ]] || fail "killed rch-wkr exited $rc"
sleep 0.2
[[ $(health_field active_builds) == 1 ]] || fail "the surviving job lost its lease when rch-wkr died"
kill -9 "$pid"
wait_active 0
[[ -z $(ls -A "$root/state/leases") ]] || fail "stale lease left: $(ls "$root/state/leases")"

echo "--- runtime libraries"
libs=$(ldd "$RCH_WKR" 2>&1) || true
if grep -Eq 'libstdc\+\+|libgcc_s|libssh|libcurl|lua' <<<"$libs"; then
  fail "rch-wkr links a library it must not: $libs"
fi
grep -q 'libc\.so' <<<"$libs" || fail "unexpected ldd output: $libs"

echo "PASS"
