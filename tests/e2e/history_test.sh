#!/usr/bin/env bash
# rch fleet history (--limit, --worker, --json, show ID) after real deploys,
# and rch fleet audit verify on the audit log they wrote, intact and tampered.
source "$(dirname "$0")/lib.sh"
: "${RCH_TESTBED_DIR:?}"
export RCH_CONFIG_DIR=$TB RCH_STATE_DIR="$TMP/state" RCH_HOME="$TMP/home" RCH_DATA_DIR="$TMP/data"
reset_workers
trap 'reset_workers; rm -rf "$TMP"' EXIT
json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1" <<<"$OUT"; }

expect_exit 0 "$RCH" fleet history
contains "$OUT" "no deployments recorded"

expect_exit 0 "$RCH" fleet deploy --no-toolchain --json
first=$(python3 -c "import json,sys; print(json.load(sys.stdin)['id'])" <<<"$OUT")
expect_exit 0 "$RCH" fleet deploy --no-toolchain --worker w2 --force --json
second=$(python3 -c "import json,sys; print(json.load(sys.stdin)['id'])" <<<"$OUT")
expect_exit 0 "$RCH" fleet deploy --no-toolchain --worker w3,w4 --json
third=$(python3 -c "import json,sys; print(json.load(sys.stdin)['id'])" <<<"$OUT")

expect_exit 0 "$RCH" fleet history --json
json "ids=[x['id'] for x in d['deployments']]; assert ids==['$third','$second','$first'], ids
x=d['deployments'][2]
for k in ('id','started_at','completed_at','duration_secs','user','machine','target_version','strategy','outcome','counts'):
    assert k in x, k
assert x['counts']=={'completed':4,'failed':0,'skipped':0,'rolled_back':0,'aborted':0}, x['counts']
assert d['deployments'][0]['counts']['skipped']==2, d['deployments'][0]"

expect_exit 0 "$RCH" fleet history --limit 2 --json
json "assert [x['id'] for x in d['deployments']]==['$third','$second']"
expect_exit 0 "$RCH" fleet history --worker w1 --json
json "assert [(x['id'],x['worker_status']) for x in d['deployments']]==[('$first','Completed')], d"
expect_exit 0 "$RCH" fleet history --worker w2 --limit 5 --json
json "assert [(x['id'],x['worker_status']) for x in d['deployments']]==[('$second','Completed'),('$first','Completed')], d"
expect_exit 0 "$RCH" fleet history --limit 2
grep -qE "^$third .* all_at_once .*completed" <<<"$OUT" || fail "history table: $OUT"
[[ $(grep -c -- '-.*-.*-' <<<"$OUT") == 2 ]] || fail "--limit 2 printed: $OUT"

expect_exit 0 "$RCH" fleet history show "$second"
contains "$OUT" "Deployment $second: completed"
grep -qE '^  w2 +Completed' <<<"$OUT" || fail "show: $OUT"
grep -qE '^      transfer +completed' <<<"$OUT" || fail "show lacks steps: $OUT"
expect_exit 2 "$RCH" fleet history show no-such-id; contains "$ERR" "no deployment 'no-such-id'"
# Any unique prefix of an id names it; an ambiguous one (the empty prefix matches all) says so.
expect_exit 0 "$RCH" fleet history show "${second:0:8}"
contains "$OUT" "Deployment $second: completed"
mkdir "$RCH_STATE_DIR/deployments/${second:0:8}x" "$RCH_STATE_DIR/deployments/${second:0:8}y"
expect_exit 2 "$RCH" fleet history show "${second:0:8}"
contains "$ERR" "'${second:0:8}' is the start of 3 deployment ids"
rmdir "$RCH_STATE_DIR/deployments/${second:0:8}x" "$RCH_STATE_DIR/deployments/${second:0:8}y"

audit="$RCH_STATE_DIR/audit.jsonl"
expect_exit 0 "$RCH" fleet audit verify "$audit"; contains "$OUT" "hash chain intact"
n=$(wc -l <"$audit")
sed '5s/"w[0-9]"/"w9"/' "$audit" >"$TMP/edited.jsonl"
cmp -s "$audit" "$TMP/edited.jsonl" && fail "the edit changed nothing"
expect_exit 1 "$RCH" fleet audit verify "$TMP/edited.jsonl"; contains "$ERR" "edited.jsonl:6: hash chain broken"
sed '7d' "$audit" >"$TMP/deleted.jsonl"
expect_exit 1 "$RCH" fleet audit verify "$TMP/deleted.jsonl"; contains "$ERR" "deleted.jsonl:7: hash chain broken"
awk 'NR==3{held=$0; next} NR==4{print; print held; next} {print}' "$audit" >"$TMP/swapped.jsonl"
[[ $(wc -l <"$TMP/swapped.jsonl") == "$n" ]] || fail "swap lost a line"
expect_exit 1 "$RCH" fleet audit verify "$TMP/swapped.jsonl"; contains "$ERR" "swapped.jsonl:3: hash chain broken"
expect_exit 1 "$RCH" fleet audit verify "$TMP/missing.jsonl"
echo "history_test: ok"
