#!/usr/bin/env bash
# rch fleet rollback against the real sshd testbed: back to the previous
# version everywhere (links, the agent runs, audit, history), --worker,
# --to-version (present, missing on one worker), --dry-run, --verify with a
# healthy and an unhealthy agent, and no older version to go back to.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

# rollback WANT_EXIT ARGS…: rch fleet rollback --json ARGS…, result in $OUT.
rollback() {
  local want=$1; shift
  expect_exit "$want" "$RCH" fleet rollback --json "$@"
}
audit_lines() { wc -l <"$RCH_STATE_DIR/audit.jsonl"; }
history_lines() { wc -l <"$RCH_STATE_DIR/history.jsonl"; }

# ---- 0.1.0 everywhere, then 0.2.0 everywhere.
deploy 0
DEP1=$(json 'print(d["id"])')
stage "$NEXT" "$RCH_WKR_NEXT"
deploy 0 --version "$NEXT"
for k in 1 2 3 4; do installed "$k" "$NEXT" "$NEXT_SHA"; done

# ---- --dry-run: the plan, and nothing changes (workers, audit log, history).
snap_all before_dry
a=$(audit_lines); h=$(history_lines)
rollback 0 --dry-run
json '
assert d["dry_run"] is True and d["counts"] == {"rolled_back": 4, "failed": 0, "skipped": 0}, d
for w in d["workers"]:
    assert w["status"] == "WouldRollBack" and w["error"] is None, w
    assert (w["from_version"], w["to_version"]) == (os.environ["NEXT"], os.environ["OWN"]), w'
same_as before_dry 1 2 3 4
[[ $(audit_lines) == "$a" && $(history_lines) == "$h" ]] || fail "--dry-run wrote to the audit log or the history"
expect_exit 0 "$RCH" fleet rollback --dry-run
contains "$OUT" "w3 would roll back $NEXT -> $OWN"
contains "$OUT" "(nothing was changed)"
same_as before_dry 1 2 3 4

# ---- Rollback: every worker back to 0.1.0, the agent runs, audited, in the history.
rollback 0
json '
assert d["dry_run"] is False and d["counts"] == {"rolled_back": 4, "failed": 0, "skipped": 0}, d
assert [w["worker_id"] for w in d["workers"]] == ["w1", "w2", "w3", "w4"], d
for w in d["workers"]:
    assert w["status"] == "RolledBack" and w["error"] is None, w
    assert (w["from_version"], w["to_version"]) == (os.environ["NEXT"], os.environ["OWN"]), w'
RB=$(json 'print(d["id"])')
for k in 1 2 3 4; do
  # current -> versions/v0.1.0, bin/rch-wkr runs and says 0.1.0, the 0.1.0 install is untouched.
  installed "$k" "$OWN" "$OWN_SHA" "$DEP1"
  [[ $(versions_of "$k") == "v$OWN v$NEXT" ]] || fail "w$k versions after the rollback: $(versions_of "$k")"
done
RB=$RB py '
rb = [e for e in audit() if e["deployment_id"] == os.environ["RB"]]
types = [e["event_type"] for e in rb]
assert types[0] == "DeploymentStarted" and types[-1] == "DeploymentCompleted", types
back = sorted((e["worker_id"], e["details"]["from_version"], e["details"]["to_version"]) for e in rb
              if e["event_type"] == "WorkerRolledBack")
assert back == [("w%d" % k, os.environ["NEXT"], os.environ["OWN"]) for k in (1, 2, 3, 4)], back
assert all(e["details"]["source"] == "deployment records" for e in rb if e["event_type"] == "WorkerRolledBack"), rb
h = load(os.environ["RCH_STATE_DIR"] + "/history.jsonl")[-1]
assert h["id"] == os.environ["RB"] and h["strategy"] == "rollback" and h["outcome"] == "completed", h
assert h["counts"]["rolled_back"] == 4 and h["counts"]["failed"] == 0, h
assert h["workers"] == {"w1": "RolledBack", "w2": "RolledBack", "w3": "RolledBack", "w4": "RolledBack"}, h'
expect_exit 0 "$RCH" fleet history --limit 1 --json
json 'x = d["deployments"][0]; assert x["id"] == "'"$RB"'" and x["strategy"] == "rollback", x'
expect_exit 0 "$RCH" fleet audit verify "$RCH_STATE_DIR/audit.jsonl"

# ---- Nothing older than 0.1.0: a clear per-worker error, exit 1, nothing touched.
snap_all at_own
rollback 1
json '
assert d["counts"] == {"rolled_back": 0, "failed": 4, "skipped": 0}, d
for w in d["workers"]:
    assert w["status"] == "Failed" and w["error"] == "no version older than %s on %s" % (os.environ["OWN"], w["worker_id"]), w'
same_as at_own 1 2 3 4
expect_exit 1 "$RCH" fleet rollback --worker w2
contains "$OUT" "w2 Failed $OWN -> ?: no version older than $OWN on w2"
same_as at_own 1 2 3 4

# ---- --worker: only w3 goes back; the others stay byte-identical.
deploy 0 --version "$NEXT"
DEP3=$(json 'print(d["id"])')
snap_all at_next
rollback 0 --worker w3
json 'assert [(w["worker_id"], w["status"], w["to_version"]) for w in d["workers"]] == [("w3", "RolledBack", os.environ["OWN"])], d'
installed 3 "$OWN" "$OWN_SHA" "$DEP1"
same_as at_next 1 2 4

# ---- --to-version: present on w1 and w4 (switched), already current on w3 (skipped),
# missing on w2 (a clear error, w2 byte-identical), exit 1.
rm -rf "$(root_of 2)/versions/v$OWN"
snap_all before_to
rollback 1 --to-version "$OWN"
json '
s = {w["worker_id"]: (w["status"], w["to_version"], w["error"]) for w in d["workers"]}
assert s["w1"] == ("RolledBack", os.environ["OWN"], None), s
assert s["w4"] == ("RolledBack", os.environ["OWN"], None), s
assert s["w3"] == ("Skipped", os.environ["OWN"], "already at " + os.environ["OWN"]), s
assert s["w2"][0] == "Failed" and s["w2"][2] == "version %s is not present on w2 (has: %s)" % (os.environ["OWN"], os.environ["NEXT"]), s
assert d["counts"] == {"rolled_back": 2, "failed": 1, "skipped": 1}, d'
same_as before_to 2 3
installed 1 "$OWN" "$OWN_SHA" "$DEP1"
installed 4 "$OWN" "$OWN_SHA" "$DEP1"
installed 2 "$NEXT" "$NEXT_SHA" "$DEP3"
py '
h = load(os.environ["RCH_STATE_DIR"] + "/history.jsonl")[-1]
assert h["strategy"] == "rollback" and h["outcome"] == "failed" and h["target_version"] == os.environ["OWN"], h
assert h["workers"] == {"w1": "RolledBack", "w2": "Failed", "w3": "Skipped", "w4": "RolledBack"}, h
ev = [e for e in audit() if e["deployment_id"] == h["id"]]
assert sorted(e["worker_id"] for e in ev if e["event_type"] == "WorkerRolledBack") == ["w1", "w4"], ev
assert ev[-1]["event_type"] == "DeploymentFailed", ev[-1]'
# The default target (the recorded previous version) is missing on w2 too.
rollback 1 --worker w2
json 'w = d["workers"][0]; assert w["status"] == "Failed" and w["error"] == "no version older than %s on w2" % os.environ["NEXT"], w'
same_as before_to 2
# --to-version forward to a version present (w1: 0.1.0 -> 0.2.0), and not a version at all.
rollback 0 --to-version "$NEXT" --worker w1
installed 1 "$NEXT" "$NEXT_SHA" "$DEP3"
expect_exit 2 "$RCH" fleet rollback --to-version not-a-version
contains "$ERR" "--to-version not-a-version is not a version"

# ---- --verify: a healthy previous agent passes; an unhealthy one is reported, exit 1.
# w1 runs 0.2.0 again; w4 runs 0.1.0 -> upgrade it, then roll both back with --verify.
deploy 0 --version "$NEXT" --worker w4
rollback 0 --verify --worker w1,w4
json 'assert [(w["worker_id"], w["status"]) for w in d["workers"]] == [("w1", "RolledBack"), ("w4", "RolledBack")], d'
installed 1 "$OWN" "$OWN_SHA" "$DEP1"
installed 4 "$OWN" "$OWN_SHA" "$DEP1"
deploy 0 --version "$NEXT" --worker w1
# Same version, but the unhealthy build: --version works, health fails.
cp "$RCH_WKR_UNHEALTHY" "$(root_of 1)/versions/v$OWN/rch-wkr"
rollback 1 --verify --worker w1
json 'w = d["workers"][0]
assert w["status"] == "Failed" and w["error"].startswith("rolled back, but health reports failure"), w'
[[ $(readlink "$(root_of 1)/current") == "versions/v$OWN" ]] || fail "w1 was not switched"
py '
e = [e for e in audit() if e["event_type"] == "WorkerRolledBack"][-1]
assert e["worker_id"] == "w1" and e["details"]["verify_error"].startswith("rolled back, but health"), e'

# ---- The previous version comes from the deployment records first: after 0.2.0 then a
# downgrade to 0.1.0, the rollback goes back to 0.2.0 (versions/ alone has nothing older).
reset_workers
deploy 0 --version "$NEXT" --worker w2
deploy 0 --version "$OWN" --worker w2
rollback 0 --worker w2
json 'w = d["workers"][0]; assert (w["status"], w["from_version"], w["to_version"]) == ("RolledBack", os.environ["OWN"], os.environ["NEXT"]), w'
installed 2 "$NEXT" "$NEXT_SHA"
py '
e = [e for e in audit() if e["event_type"] == "WorkerRolledBack"][-1]
assert e["worker_id"] == "w2" and e["details"]["source"] == "deployment records", e'

echo "fleet_ops_test: ok"
