#!/usr/bin/env bash
# The simulated fleet at scale (RCH_MOCK_SSH=1): a deploy to 5,000 workers,
# and the next command that reads them back, each within a generous bound.
# A regression guard, not a benchmark: when every change rewrote the whole
# of sim-fleet.json, the deploy alone took about 250 s (docs/performance.md).
source "$(dirname "$0")/lib.sh"
: "${RCH_WKR:?}"
export RCH_MOCK_SSH=1 NO_COLOR=1 RCH_CONFIG_DIR=$TMP/cfg RCH_STATE_DIR=$TMP/state RCH_DATA_DIR=$TMP/data \
  RCH_HOME=$TMP/home RCH_CACHE_DIR=$TMP/cache
unset RCH_LOG_LEVEL RCH_SIM_LATENCY_MS RCH_SIM_BANDWIDTH_MBPS RCH_SIM_FAULT_RATE RCH_SIM_SEED RCH_SIM_FAULTS
mkdir -p "$RCH_CONFIG_DIR" "$RCH_STATE_DIR" "$RCH_DATA_DIR" "$RCH_HOME" "$RCH_CACHE_DIR"
N=5000 BOUND=60
OWN=$("$RCH_WKR" --version); OWN=${OWN#rch-wkr }
for ((i = 1; i <= N; i++)); do printf '[[workers]]\nid = "sim-%d"\nhost = "10.0.%d.%d"\n\n' "$i" $((i / 250)) $((i % 250)); done \
  >"$RCH_CONFIG_DIR/workers.toml"
# timed LABEL CMD…: runs CMD (expect_exit 0) and fails past BOUND seconds.
timed() {
  local label=$1 t0=$EPOCHREALTIME secs; shift
  expect_exit 0 "$@"
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  echo "$label: $secs s"
  awk -v s="$secs" -v b="$BOUND" 'BEGIN { exit !(s <= b) }' || fail "$label took $secs s (bound $BOUND s)"
}
counts() {
  WANT=$1 python3 -c '
import json, os, sys
d = json.loads(sys.stdin.read())
want = json.loads(os.environ["WANT"])
assert all(d["counts"][k] == v for k, v in want.items()), d["counts"]' <<<"$OUT" || fail "counts: $OUT"
}
timed "deploy to $N simulated workers" "$RCH" fleet deploy --no-toolchain --parallel 256 --json
counts '{"completed": 5000, "failed": 0}'
# The next process sees all of them at the new version: nothing to do.
timed "unchanged redeploy of $N" "$RCH" fleet deploy --no-toolchain --parallel 256 --json
counts '{"skipped": 5000, "completed": 0, "failed": 0}'
echo ok
