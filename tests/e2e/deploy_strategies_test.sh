#!/usr/bin/env bash
# Deploy strategies against the real sshd testbed: all_at_once under a
# --parallel cap, canary (pass; fail with rollback, on a fresh fleet and on
# one running the next version), rolling (batches; stop on failures), and a
# user strategy from --script-dir.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

DEP=""
# events: this deployment's audit entries as (event_type, worker_id, details), in order.
ev_py() {
  DEP=$(json 'print(d["id"])') py "
ev = [e for e in audit() if e['deployment_id'] == os.environ['DEP']]
def first(t, w=None): return next(i for i, e in enumerate(ev) if e['event_type'] == t and (w is None or e['worker_id'] == w))
def last(t, w=None): return max(i for i, e in enumerate(ev) if e['event_type'] == t and (w is None or e['worker_id'] == w))
def types(): return [e['event_type'] for e in ev]
$1"
}
# max_active: the most workers between their first journal line past preflight (which runs
# wider, at probe_parallel, and changes nothing) and their last, at any point.
max_active() {
  DEP=$(json 'print(d["id"])') py '
lines = load(os.environ["RCH_STATE_DIR"] + "/deployments/" + os.environ["DEP"] + "/journal.jsonl")
lines = [l for l in lines if "worker" in l and l.get("status") != "Preflight"]
last = {l["worker"]: i for i, l in enumerate(lines)}
active, peak = set(), 0
for i, l in enumerate(lines):
    active.add(l["worker"])
    peak = max(peak, len(active))
    if last[l["worker"]] == i:
        active.discard(l["worker"])
print(peak)'
}

# ---- all_at_once with --parallel 2: never more than 2 workers in flight.
deploy 0 --parallel 2
json '
assert d["counts"]["completed"] == 4 and d["outcome"] == "completed", d["counts"]
assert d["strategy"] == {"type": "AllAtOnce", "parallelism": 2, "script": "all_at_once"}, d["strategy"]
assert 1 <= d["peak_parallelism"] <= 2, d["peak_parallelism"]'
peak=$(max_active)
((peak <= 2)) || fail "journal shows $peak workers in flight with --parallel 2"
for k in 1 2 3 4; do installed "$k" "$OWN" "$OWN_SHA"; done
reset_workers

# ---- canary 25% with a 1 s wait: one canary, verified, then the rest.
deploy 0 --canary 25 --canary-wait 1
json '
assert d["counts"]["completed"] == 4 and d["outcome"] == "completed", d
assert d["strategy"]["type"] == "Canary" and d["strategy"]["percent"] == 25 and d["strategy"]["wait_secs"] == 1, d'
ev_py '
from datetime import datetime
t = types()
s, p = first("CanaryStarted"), first("CanaryPassed")
assert t.count("CanaryStarted") == 1 and t.count("CanaryPassed") == 1 and "CanaryFailed" not in t, t
assert ev[s]["details"]["canary_count"] == 1 and ev[s]["details"]["total_workers"] == 4, ev[s]
assert s < last("WorkerVerifyCompleted", "w1") < p, t
# Nothing happens on the other workers before the canary passed.
assert all(e["worker_id"] in (None, "w1") for e in ev[:p]), [(e["event_type"], e["worker_id"]) for e in ev[:p]]
for w in ("w2", "w3", "w4"):
    assert first("WorkerTransferStarted", w) > p and first("WorkerVerifyCompleted", w) > p, w
ts = lambda e: datetime.strptime(e["timestamp"].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
waited = (ts(ev[p]) - ts(ev[last("WorkerVerifyCompleted", "w1")])).total_seconds()
assert waited >= 0.95, waited
assert t[-1] == "DeploymentCompleted", t'
for k in 1 2 3 4; do installed "$k" "$OWN" "$OWN_SHA"; done
reset_workers

# ---- rolling, batches of 2, no wait: w3/w4 start only after w1/w2 finished.
deploy 0 --rolling-batch 2 --rolling-wait 0
json '
assert d["counts"]["completed"] == 4, d["counts"]
assert d["strategy"]["type"] == "Rolling" and d["strategy"]["batch_size"] == 2, d["strategy"]
assert 1 <= d["peak_parallelism"] <= 2, d["peak_parallelism"]'
ev_py '
done_first = max(last("WorkerVerifyCompleted", "w1"), last("WorkerVerifyCompleted", "w2"))
start_second = min(first("WorkerTransferStarted", "w3"), first("WorkerTransferStarted", "w4"))
assert done_first < start_second, types()'
for k in 1 2 3 4; do installed "$k" "$OWN" "$OWN_SHA"; done
reset_workers

# ---- rolling stops once more than --max-fail-percent failed: w1 is down, batch 1 fails, batch 2 untouched.
"${TESTBED[@]}" stop 1 "$TB" >/dev/null
snap_all rolling_stop
deploy 1 --rolling-batch 2 --rolling-wait 0 --max-fail-percent 0
json '
assert d["counts"] == {"completed": 1, "failed": 1, "skipped": 2, "rolled_back": 0, "aborted": 2}, d["counts"]
assert st["w1"]["status"] == "Failed" and st["w2"]["status"] == "Completed", d
for w in ("w3", "w4"):
    assert st[w]["status"] == "Skipped" and st[w]["error"].startswith("rolling deployment stopped: 1 of 2"), st[w]
assert d["reason"].startswith("rolling deployment stopped"), d["reason"]'
same_as rolling_stop 1 3 4
installed 2 "$OWN" "$OWN_SHA"
"${TESTBED[@]}" start 1 "$TB" >/dev/null
reset_workers

# ---- A canary that fails to deploy (its sshd is down) stops the rollout before the rest.
"${TESTBED[@]}" stop 1 "$TB" >/dev/null
snap_all canary_down
deploy 1 --canary 25 --canary-wait 0
json '
assert d["reason"] == "canary failed: 1 canary worker(s) failed to deploy", d["reason"]
assert st["w1"]["status"] == "Failed" and st["w1"]["error"].startswith("preflight: "), st["w1"]
for w in ("w2", "w3", "w4"): assert st[w]["status"] == "Skipped" and st[w]["steps"] == [], st[w]'
same_as canary_down 1 2 3 4
ev_py 't = types(); assert "CanaryFailed" in t and "CanaryPassed" not in t and "WorkerRolledBack" not in t, t'
"${TESTBED[@]}" start 1 "$TB" >/dev/null

# ---- canary failure on a fresh fleet: the unhealthy agent (same version) on 2 canaries,
# which are rolled back to no agent; the other two are never touched.
stage "$OWN" "$RCH_WKR_UNHEALTHY"
snap_all canary_fail
deploy 1 --canary 50 --canary-wait 0
json '
assert d["outcome"] == "failed" and d["reason"].startswith("canary failed: canary w1 reports unhealthy"), d["reason"]
assert d["counts"] == {"completed": 0, "failed": 0, "skipped": 2, "rolled_back": 2, "aborted": 2}, d["counts"]
for w in ("w1", "w2"):
    assert st[w]["status"] == "RolledBack" and st[w]["error"].startswith("canary failed: "), st[w]
for w in ("w3", "w4"):
    assert st[w]["status"] == "Skipped" and st[w]["error"].startswith("canary failed: "), st[w]
    assert st[w]["steps"] == [], st[w]'
no_agent 1
no_agent 2
same_as canary_fail 3 4
[[ ! -e $(root_of 3)/versions && ! -e $(root_of 4)/versions ]] || fail "w3/w4 got a versions dir"
ev_py '
t = types()
assert t.count("CanaryStarted") == 1 and ev[first("CanaryStarted")]["details"]["canary_count"] == 2, t
assert "CanaryPassed" not in t and t.count("CanaryFailed") == 1, t
rb = sorted(e["worker_id"] for e in ev if e["event_type"] == "WorkerRolledBack")
assert rb == ["w1", "w2"], rb
assert first("CanaryFailed") < first("WorkerRolledBack"), t
assert all(e["worker_id"] not in ("w3", "w4") for e in ev), [e for e in ev if e["worker_id"] in ("w3", "w4")]
assert t[-1] == "DeploymentFailed", t'

# ---- canary failure on a fleet running the next version: the canaries go back to it.
reset_workers
stage "$NEXT" "$RCH_WKR_NEXT"
deploy 0 --version "$NEXT"
snap_all canary_fail_prev
deploy 1 --version "$OWN" --canary 50 --canary-wait 0
json '
assert d["counts"]["rolled_back"] == 2 and d["counts"]["skipped"] == 2, d["counts"]
assert st["w1"]["status"] == "RolledBack" and st["w1"]["current_version"] == os.environ["NEXT"], st["w1"]'
for k in 1 2; do
  installed "$k" "$NEXT" "$NEXT_SHA"
  [[ $(versions_of "$k") == "v$OWN v$NEXT" ]] || fail "w$k versions: $(versions_of "$k")"
done
same_as canary_fail_prev 3 4
ev_py '
rb = {e["worker_id"]: e["details"]["to_version"] for e in ev if e["event_type"] == "WorkerRolledBack"}
assert rb == {"w1": os.environ["NEXT"], "w2": os.environ["NEXT"]}, rb'
unstage "$OWN"
unstage "$NEXT"
reset_workers

# ---- A user strategy from --script-dir: one worker at a time, in reverse order.
mkdir -p "$TMP/sd/strategies"
cat >"$TMP/sd/strategies/reverse_serial.lua" <<'EOF'
local M = { name = "reverse_serial" }
function M.describe() return "reverse order, one at a time" end
function M.run(d)
  d:log_audit("CustomStrategyStarted", { workers = #d.workers })
  for i = #d.workers, 1, -1 do d:deploy({ d.workers[i] }) end
end
return M
EOF
cat >"$TMP/sd/strategies/first_only.lua" <<'EOF'
return { name = "first_only", run = function(d) d:deploy({ d.workers[1] }) end }
EOF
GLOBAL=(--script-dir "$TMP/sd")
deploy 0 --strategy reverse_serial
json '
assert d["counts"]["completed"] == 4 and d["peak_parallelism"] == 1, d
assert d["strategy"] == {"type": "Custom", "script": "reverse_serial", "parallelism": 4}, d["strategy"]'
ev_py '
order = [e["worker_id"] for e in ev if e["event_type"] == "WorkerInstallCompleted"]
assert order == ["w4", "w3", "w2", "w1"], order
for a, b in (("w4", "w3"), ("w3", "w2"), ("w2", "w1")):
    assert last("WorkerVerifyCompleted", a) < first("WorkerPreflight", b), types()
assert ev[first("CustomStrategyStarted")]["details"] == {"workers": 4}, ev'
for k in 1 2 3 4; do installed "$k" "$OWN" "$OWN_SHA"; done
expect_exit 0 "$RCH" "${GLOBAL[@]}" fleet deploy --no-toolchain --strategy reverse_serial
contains "$OUT" "reverse order, one at a time"
# A strategy that leaves workers out fails the deployment; the left-out workers are untouched.
reset_workers
snap_all first_only
deploy 1 --strategy first_only
json '
assert st["w1"]["status"] == "Completed", st["w1"]
for w in ("w2", "w3", "w4"):
    assert st[w]["status"] == "Skipped" and st[w]["error"] == "not deployed by strategy first_only", st[w]
assert d["counts"]["aborted"] == 3, d["counts"]'
same_as first_only 2 3 4
GLOBAL=()
# An unknown strategy is a usage error.
expect_exit 2 "$RCH" fleet deploy --no-toolchain --strategy no_such_strategy
contains "$ERR" "no_such_strategy"

echo "deploy_strategies_test: ok"
