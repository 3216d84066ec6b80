#!/usr/bin/env bash
# rch fleet deploy against the real sshd testbed: a fresh install on every
# worker, redeploy (all skipped, nothing touched), --force, --worker, the
# toolchain step without rustup, and an upgrade to the next version.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

# ---- Fresh deploy of rch's own version to all 4 workers.
deploy 0
json '
assert d["outcome"] == "completed" and d["reason"] is None and d["resumed"] is False, d
assert d["target_version"] == os.environ["OWN"], d
assert d["counts"] == {"completed": 4, "failed": 0, "skipped": 0, "rolled_back": 0, "aborted": 0}, d["counts"]
assert d["strategy"]["type"] == "AllAtOnce" and d["strategy"]["parallelism"] == 4, d["strategy"]
assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", d["id"]), d["id"]
assert [w["worker_id"] for w in d["workers"]] == ["w1", "w2", "w3", "w4"], d["workers"]
for w in d["workers"]:
    assert w["status"] == "Completed" and w["error"] is None and w["current_version"] is None, w
    assert w["target_version"] == os.environ["OWN"], w
    assert [s["name"] for s in w["steps"]] == ["preflight", "transfer", "install", "verify"], w["steps"]
    assert all(s["status"] == "completed" and s["started_at"] and s["completed_at"] for s in w["steps"]), w
    assert w["steps"][0]["output"] == "no agent installed", w["steps"][0]'
DEP1=$(json 'print(d["id"])')
for k in 1 2 3 4; do
  installed "$k" "$OWN" "$OWN_SHA" "$DEP1"
  [[ $(versions_of "$k") == "v$OWN" ]] || fail "w$k versions: $(versions_of "$k")"
done
# The deployment's durable state.
for f in plan.json journal.jsonl result.json; do
  [[ -s $RCH_STATE_DIR/deployments/$DEP1/$f ]] || fail "missing deployments/$DEP1/$f"
done
DEP=$DEP1 py '
p = json.load(open(os.environ["RCH_STATE_DIR"] + "/deployments/" + os.environ["DEP"] + "/plan.json"))
assert p["id"] == os.environ["DEP"] and p["target_version"] == os.environ["OWN"], p
assert p["artifact"]["sha256"] == os.environ["OWN_SHA"], p["artifact"]
assert [w["worker_id"] for w in p["workers"]] == ["w1", "w2", "w3", "w4"], p["workers"]
r = json.load(open(os.environ["RCH_STATE_DIR"] + "/deployments/" + os.environ["DEP"] + "/result.json"))
assert r["id"] == os.environ["DEP"] and r["counts"]["completed"] == 4, r'

# ---- Redeploy: every worker is already at the target: all Skipped, nothing changes on them.
snap_all before_redeploy
deploy 0
json '
assert d["outcome"] == "completed", d
assert d["counts"] == {"completed": 0, "failed": 0, "skipped": 4, "rolled_back": 0, "aborted": 0}, d["counts"]
for w in d["workers"]:
    assert w["status"] == "Skipped" and w["error"] == "already at " + os.environ["OWN"], w
    assert w["current_version"] == os.environ["OWN"], w
    assert [s["name"] for s in w["steps"]] == ["preflight"], w["steps"]'
same_as before_redeploy 1 2 3 4

# ---- --force reinstalls: all Completed; the uploaded file is already there (same sha256).
deploy 0 --force
json '
assert d["counts"]["completed"] == 4 and d["outcome"] == "completed", d["counts"]
for w in d["workers"]:
    assert w["status"] == "Completed" and w["current_version"] == os.environ["OWN"], w
    t = [s for s in w["steps"] if s["name"] == "transfer"][0]
    assert t["output"] == "already present, sha256 matches", t'
DEP2=$(json 'print(d["id"])')
[[ $DEP2 != "$DEP1" ]] || fail "--force reused the deployment id"
for k in 1 2 3 4; do installed "$k" "$OWN" "$OWN_SHA" "$DEP2"; done

# ---- --worker w2,w3 touches only those two; w1 and w4 stay byte-identical.
snap_all before_subset
deploy 0 --force --worker w2,w3
json '
assert [w["worker_id"] for w in d["workers"]] == ["w2", "w3"], d["workers"]
assert d["counts"]["completed"] == 2 and all(w["status"] == "Completed" for w in d["workers"]), d'
DEP3=$(json 'print(d["id"])')
same_as before_subset 1 4
installed 2 "$OWN" "$OWN_SHA" "$DEP3"
installed 3 "$OWN" "$OWN_SHA" "$DEP3"
installed 1 "$OWN" "$OWN_SHA" "$DEP2"
installed 4 "$OWN" "$OWN_SHA" "$DEP2"

# ---- Without --no-toolchain: the workers have no rustup, so the toolchain step is skipped (a warning, not a failure).
expect_exit 0 "$RCH" fleet deploy --force --worker w1 --json
json '
w = st["w1"]
assert w["status"] == "Completed", w
assert [s["name"] for s in w["steps"]] == ["preflight", "transfer", "toolchain", "install", "verify"], w["steps"]
t = w["steps"][2]
assert t["status"] == "completed" and t["output"] == "skipped: rustup not installed", t'
contains "$ERR" "rustup is not installed"

# ---- Upgrade to the next minor version: both versions kept, current -> the new one.
stage "$NEXT" "$RCH_WKR_NEXT"
snap_all before_upgrade
deploy 0 --version "$NEXT"
json '
assert d["target_version"] == os.environ["NEXT"] and d["counts"]["completed"] == 4, d
for w in d["workers"]:
    assert w["status"] == "Completed" and w["current_version"] == os.environ["OWN"], w
    assert w["steps"][0]["output"] == "current " + os.environ["OWN"], w["steps"][0]'
DEP4=$(json 'print(d["id"])')
for k in 1 2 3 4; do
  installed "$k" "$NEXT" "$NEXT_SHA" "$DEP4"
  [[ $(versions_of "$k") == "v$OWN v$NEXT" ]] || fail "w$k versions after the upgrade: $(versions_of "$k")"
  # The previous version is still intact (rollback target).
  cmp -s "$(root_of "$k")/versions/v$OWN/rch-wkr" "$RCH_WKR" || fail "w$k: versions/v$OWN/rch-wkr changed"
  diff <(grep "/versions/v$OWN/" "$TMP/snap.before_upgrade.$k") <(snap "$k" | grep "/versions/v$OWN/") >/dev/null ||
    fail "w$k: versions/v$OWN was modified by the upgrade"
done
# And the upgrade redeployed is a no-op.
deploy 0 --version "$NEXT"
json 'assert d["counts"]["skipped"] == 4, d["counts"]'

# ---- A worker named twice is deployed once (two pipelines on one worker would race).
deploy 0 --force --worker w2,w2 --version "$NEXT"
json 'assert [w["worker_id"] for w in d["workers"]] == ["w2"] and d["counts"]["completed"] == 1, d'
installed 2 "$NEXT" "$NEXT_SHA"

# ---- A tampered root: a truncated copy of the target version, a stale temp upload, a dangling
# current link and a bin/rch-wkr that is a plain file. The deploy repairs all of it.
reset_workers
r=$(root_of 1)
mkdir -p "$r/versions/v$OWN" "$r/bin"
head -c 100000 "$RCH_WKR" >"$r/versions/v$OWN/rch-wkr"
chmod 755 "$r/versions/v$OWN/rch-wkr"
echo junk >"$r/versions/v$OWN/.rch-wkr.part.999"
ln -s versions/v9.9.9 "$r/current"
cp "$RCH_WKR_NEXT" "$r/bin/rch-wkr"
r2=$(root_of 2)
mkdir -p "$r2/bin"
ln -s ../current/rch-wkr "$r2/bin/rch-wkr"
chown -R --reference="$TB/w1/root" "$r" "$r2"
deploy 0 --worker w1,w2
json '
assert st["w1"]["status"] == "Completed" and st["w1"]["current_version"] == os.environ["NEXT"], st["w1"]
assert st["w2"]["status"] == "Completed" and st["w2"]["current_version"] is None, st["w2"]
t = [s for s in st["w1"]["steps"] if s["name"] == "transfer"][0]
assert t["output"] != "already present, sha256 matches", t'
contains "$ERR" "does not report a version"
[[ -z $(find "$r" -name '.rch-wkr.part.*') ]] || fail "w1: the stale partial upload is still there"
installed 1 "$OWN" "$OWN_SHA"
installed 2 "$OWN" "$OWN_SHA"

# ---- Human output (no --json): one summary line, exit 0.
expect_exit 0 "$RCH" fleet deploy --no-toolchain --version "$NEXT"
grep -qE "^Deployment [0-9a-f-]{36} completed: 4 completed, 0 failed, 0 skipped, 0 rolled back in [0-9.]+s$" <<<"$OUT" ||
  fail "summary line: $OUT"

echo "deploy_test: ok"
