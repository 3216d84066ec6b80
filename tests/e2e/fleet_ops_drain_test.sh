#!/usr/bin/env bash
# rch fleet drain / undrain against the real sshd testbed, through rch-wkr's
# lease protocol: a drain waits for a running `rch-wkr exec -- sleep 2` job
# and reports it while waiting; with a 30 s job and --timeout 1 it exits 1
# naming the busy worker, which stays draining; undrain lets jobs in again.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
jcheck() {
  python3 -c "$PY_PRELUDE
d = json.loads(sys.stdin.read())
w = {x['worker_id']: x for x in d['workers']}
$1" <<<"$OUT" || fail "JSON check failed:$1
--- stdout: $OUT
--- stderr: $ERR"
}
leases() { find "$(root_of "$1")/state/leases" -name '*.lease' 2>/dev/null | wc -l; }
wait_for_lease() {
  local i
  for ((i = 0; i < 200; i++)); do
    (($(leases "$1") > 0)) && return 0
    sleep 0.05
  done
  fail "no lease appeared on w$1"
}
# Ends the jobs this test started on the workers (by the pids in their leases) before the reset.
kill_jobs() {
  local f
  for f in "$TB"/w*/root/state/leases/*.lease; do
    [[ -e $f ]] || continue
    python3 -c 'import json,sys; l=json.load(open(sys.argv[1])); print(l.get("job_pid", ""), l["pid"])' "$f" 2>/dev/null |
      xargs -r kill 2>/dev/null || true
  done
}
trap 'kill_jobs; disown -a; deploy_cleanup' EXIT
draining() { [[ -e $(root_of "$1")/state/drain ]]; }

deploy 0
for k in 1 2 3 4; do draining "$k" && fail "w$k draining after the deploy"; done
R1=$(root_of 1)

# ---- A 2 s job on w1: drain waits for it, says so while waiting, then exit 0.
on 1 "$R1/bin/rch-wkr" exec -- sleep 2 &
BACKGROUND+=($!)
wait_for_lease 1
start=$(date +%s.%N)
expect_exit 0 "$RCH" fleet drain --worker w1,w2 --timeout 20
took=$(python3 -c "print($(date +%s.%N) - $start)")
python3 -c "assert $took >= 1, $took" || fail "drain did not wait for the running job ($took s)"
contains "$OUT$ERR" "w1: 1 active build"
grep -q "w2: .*active build" <<<"$OUT$ERR" && fail "w2 has no build but was reported: $OUT$ERR"
contains "$OUT" "✓ w1 drained"
contains "$OUT" "✓ w2 drained"
(($(leases 1) == 0)) || fail "drain returned while w1 still held a lease"
draining 1 || fail "w1 is not draining after the drain"
draining 2 || fail "w2 is not draining after the drain"
draining 3 && fail "w3 is draining but was not selected"
# A draining worker refuses new jobs; status shows it.
on 1 "$R1/bin/rch-wkr" exec -- true 2>/dev/null && fail "w1 accepted a job while draining"
expect_exit 0 "$RCH" fleet status --json
jcheck 'assert [w[i]["draining"] for i in ("w1", "w2", "w3", "w4")] == [True, True, False, False], w'

# ---- undrain: jobs are accepted again.
expect_exit 0 "$RCH" fleet undrain --worker w1,w2 --json
jcheck 'assert [(x["worker_id"], x["undrained"], x["error"]) for x in d["workers"]] == [("w1", True, None), ("w2", True, None)], d'
draining 1 && fail "w1 still draining after undrain"
draining 2 && fail "w2 still draining after undrain"
on 1 "$R1/bin/rch-wkr" exec -- true || fail "w1 refuses jobs after undrain"

# ---- A 30 s job and --timeout 1: exit 1 naming w1, which stays draining; the idle ones drain.
on 1 "$R1/bin/rch-wkr" exec -- sleep 30 &
BACKGROUND+=($!)
wait_for_lease 1
start=$(date +%s.%N)
expect_exit 1 "$RCH" fleet drain --timeout 1 --json
took=$(python3 -c "print($(date +%s.%N) - $start)")
python3 -c "assert 0.9 <= $took < 15, $took" || fail "drain --timeout 1 took $took s"
jcheck '
assert (w["w1"]["drained"], w["w1"]["active_builds"], w["w1"]["error"]) == (False, 1, None), w["w1"]
for i in ("w2", "w3", "w4"):
    assert (w[i]["drained"], w[i]["active_builds"], w[i]["error"]) == (True, 0, None), w[i]'
contains "$ERR" "still busy after 1s (left draining): w1 (1 active build)"
[[ $ERR == *w2* || $ERR == *w3* || $ERR == *w4* ]] && fail "an idle worker is named busy: $ERR"
for k in 1 2 3 4; do draining "$k" || fail "w$k not draining after the timed-out drain"; done
(($(leases 1) == 1)) || fail "the job on w1 no longer holds its lease"
expect_exit 1 "$RCH" fleet drain --worker w1 --timeout 1
contains "$ERR" "still busy after 1s (left draining): w1 (1 active build)"

# ---- undrain everything: all accept jobs again (the running one is untouched).
expect_exit 0 "$RCH" fleet undrain
for k in 1 2 3 4; do
  draining "$k" && fail "w$k still draining after undrain"
  on "$k" "$(root_of "$k")/bin/rch-wkr" exec -- true || fail "w$k refuses jobs after undrain"
done
(($(leases 1) == 1)) || fail "undrain disturbed the running job on w1"
contains "$OUT" "✓ w3 accepts builds again"

echo "fleet_ops_drain_test: ok"
