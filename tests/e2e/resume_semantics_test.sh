#!/usr/bin/env bash
# What `rch fleet deploy --resume` acts on, against the real sshd testbed:
# only the newest deployment. Interrupted, then superseded by a completed
# deployment: refused, naming it, workers untouched. Finished with two failed
# workers: retried for exactly those, as a new deployment whose plan names the
# one it resumes. A rollback newest: refused. A newest plan that cannot be
# read: named. --resume with --worker or --version: a usage error.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

wait_hook "$TMP/sd"
new_dir() { comm -13 <(echo "$1") <(deployment_dirs); }
stage "$NEXT" "$RCH_WKR_NEXT"

echo "--- an interrupted deploy of $NEXT, then a completed deploy of $OWN: --resume refuses"
before=$(deployment_dirs)
"$RCH" --script-dir "$TMP/sd" fleet deploy --no-toolchain --json --version "$NEXT" >/dev/null 2>"$TMP/killed.err" &
victim=$!
BACKGROUND+=("$victim")
for k in 1 2 3 4; do wait_for "$TMP/marks/w$k" 30; done
kill -9 "$victim"
wait "$victim" || true
INTERRUPTED=$(new_dir "$before")
[[ $INTERRUPTED =~ ^[0-9a-f-]{36}$ ]] || fail "expected one interrupted deployment, got: $INTERRUPTED"
before=$(deployment_dirs)
deploy 0
COMPLETED=$(new_dir "$before")
for k in 1 2 3 4; do installed "$k" "$OWN" "$OWN_SHA"; done
snap_all completed
expect_exit 1 "$RCH" fleet deploy --resume --no-toolchain
contains "$ERR" "--resume: the newest deployment $COMPLETED ($OWN) completed; nothing to resume"
same_as completed 1 2 3 4

echo "--- --resume with --worker or --version is a usage error"
expect_exit 2 "$RCH" fleet deploy --resume --no-toolchain --worker w1
contains "$ERR" "--resume takes the workers and the version from the deployment it resumes"
expect_exit 2 "$RCH" fleet deploy --resume --no-toolchain --version "$NEXT"
contains "$ERR" "drop --worker, --exclude and --version"

echo "--- a deployment of $NEXT with two failed workers: --resume retries exactly those"
"${TESTBED[@]}" stop 3 "$TB" >/dev/null
"${TESTBED[@]}" stop 4 "$TB" >/dev/null
before=$(deployment_dirs)
deploy 1 --version "$NEXT"
FAILED=$(new_dir "$before")
json 'assert [st[w]["status"] for w in ("w1", "w2", "w3", "w4")] == ["Completed", "Completed", "Failed", "Failed"], d'
"${TESTBED[@]}" start 3 "$TB" >/dev/null
"${TESTBED[@]}" start 4 "$TB" >/dev/null
snap_all partial
before=$(deployment_dirs)
deploy 0 --resume
RETRY=$(new_dir "$before")
[[ $RETRY =~ ^[0-9a-f-]{36}$ && $RETRY != "$FAILED" ]] || fail "expected a new deployment for the retry, got: $RETRY"
contains "$ERR" "--resume: deployment $FAILED of $NEXT failed on 2 workers; retrying them as deployment $RETRY: w[3-4]"
FAILED=$FAILED RETRY=$RETRY json '
assert d["id"] == os.environ["RETRY"] and d["resumes"] == os.environ["FAILED"], d
assert sorted(st) == ["w3", "w4"] and all(w["status"] == "Completed" for w in st.values()), d
plan = json.load(open(os.environ["RCH_STATE_DIR"] + "/deployments/" + os.environ["RETRY"] + "/plan.json"))
assert plan["resumes"] == os.environ["FAILED"] and [w["worker_id"] for w in plan["workers"]] == ["w3", "w4"], plan
hist = load(os.environ["RCH_STATE_DIR"] + "/history.jsonl")
assert hist[-1]["id"] == os.environ["RETRY"] and hist[-1]["resumes"] == os.environ["FAILED"], hist[-1]'
for k in 3 4; do installed "$k" "$NEXT" "$NEXT_SHA" "$RETRY"; done
same_as partial 1 2
expect_exit 1 "$RCH" fleet deploy --resume --no-toolchain
contains "$ERR" "--resume: the newest deployment $RETRY ($NEXT) completed; nothing to resume"

echo "--- a rollback newest: refused"
expect_exit 0 "$RCH" fleet rollback --worker w1
snap_all rolled
expect_exit 1 "$RCH" fleet deploy --resume --no-toolchain
contains "$ERR" "--resume: the newest operation is rollback"
same_as rolled 1 2 3 4

echo "--- a newest plan that cannot be read is named, not skipped"
mkdir "$RCH_STATE_DIR/deployments/garbage"
echo '{"not": "a plan"' >"$RCH_STATE_DIR/deployments/garbage/plan.json"
expect_exit 1 "$RCH" fleet deploy --resume --no-toolchain
contains "$ERR" "$RCH_STATE_DIR/deployments/garbage/plan.json is not a deployment plan"
same_as rolled 1 2 3 4
echo "PASS"
