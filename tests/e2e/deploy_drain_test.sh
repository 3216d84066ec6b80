#!/usr/bin/env bash
# --drain-first against real workers: the deploy waits for a running build
# (an rch-wkr lease), a drain that times out fails the worker without
# touching its version, and either way the worker is undrained afterwards.
source "$(dirname "$0")/lib.sh"
: "${RCH_TESTBED_DIR:?}" "${RCH_WKR_NEXT:?}"
export RCH_CONFIG_DIR=$TB RCH_STATE_DIR="$TMP/state" RCH_HOME="$TMP/home" RCH_DATA_DIR="$TMP/data"
reset_workers
jobs_pids=()
cleanup() {
  for p in "${jobs_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  reset_workers
  rm -rf "$TMP"
}
trap cleanup EXIT
json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1" <<<"$OUT"; }
port1=$(awk -F' = ' '/^port/{print $2; exit}' "$TB/workers.toml")
root1="$TB/w1/root"
on_w1() {
  ssh -q -o BatchMode=yes -o UserKnownHostsFile="$TB/known_hosts" -i "$TB/client/id_ed25519" -p "$port1" \
    rchtest@127.0.0.1 "$@"
}
wait_for_lease() {
  for _ in $(seq 1 100); do
    [[ -n $(ls "$root1/state/leases" 2>/dev/null) ]] && return 0
    sleep 0.05
  done
  fail "no lease appeared on w1"
}
own=$("$RCH" --version); own=${own#rch }
next=$("$RCH_WKR_NEXT" --version); next=${next#rch-wkr }
mkdir -p "$RCH_HOME/versions/v$next"
cp "$RCH_WKR_NEXT" "$RCH_HOME/versions/v$next/rch-wkr"

expect_exit 0 "$RCH" fleet deploy --worker w1 --no-toolchain --json

# 1. A 3 s build is running: the drain waits for it, then the upgrade proceeds.
on_w1 "$root1/bin/rch-wkr" exec -- sleep 3 &
jobs_pids+=($!)
wait_for_lease
start=$(date +%s.%N)
expect_exit 0 "$RCH" fleet deploy --worker w1 --no-toolchain --version "$next" --drain-first --drain-timeout 20 --json
took=$(python3 -c "print($(date +%s.%N) - $start)")
python3 -c "assert $took >= 1.5, $took" || fail "deploy did not wait for the running build ($took s)"
json "w=d['workers'][0]; assert w['status']=='Completed', w
assert [s['name'] for s in w['steps']]==['preflight','drain','transfer','install','verify'], w['steps']"
[[ $(readlink "$root1/current") == "versions/v$next" ]] || fail "w1 not upgraded"
[[ ! -e $root1/state/drain ]] || fail "w1 still draining after a successful deploy"
grep -q '"event_type":"WorkerDrainStarted"' "$RCH_STATE_DIR/audit.jsonl" || fail "no WorkerDrainStarted"
grep -q '"event_type":"WorkerDrainCompleted"' "$RCH_STATE_DIR/audit.jsonl" || fail "no WorkerDrainCompleted"

# 2. A 30 s build and --drain-timeout 1: the worker fails at drain, keeps its
# version, and is undrained so it takes builds again.
on_w1 "$root1/bin/rch-wkr" exec -- sleep 30 &
jobs_pids+=($!)
wait_for_lease
expect_exit 1 "$RCH" fleet deploy --worker w1 --no-toolchain --force --drain-first --drain-timeout 1 --json
json "w=d['workers'][0]; assert w['status']=='Failed', w; assert 'drain timed out' in w['error'], w['error']"
[[ $(readlink "$root1/current") == "versions/v$next" ]] || fail "a failed drain changed w1's version"
[[ ! -e $root1/state/drain ]] || fail "w1 left draining after a failed drain"
on_w1 "$root1/bin/rch-wkr" exec -- true || fail "w1 refuses jobs after the failed deploy"
echo "deploy_drain_test: ok"
