#!/usr/bin/env bash
# Corrupted or unusable local state, against the real sshd testbed: a bad
# line in history.jsonl is skipped with a warning naming file:line (the rest
# of the history still shows); a plan.json or result.json of the wrong shape
# is named, not a Lua traceback; a full state dir fails a deploy with one
# clear line and exit 1 before any worker is touched.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

echo "--- one garbage line in history.jsonl"
deploy 0 --worker w1
FIRST=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$OUT")
deploy 0 --worker w2
echo 'garbage {' >>"$RCH_STATE_DIR/history.jsonl"
deploy 0 --worker w3
expect_exit 0 "$RCH" fleet history
contains "$ERR" "$RCH_STATE_DIR/history.jsonl:3: not a JSON record, skipped"
[[ $(grep -c '^[0-9a-f]\{8\}' <<<"$OUT") == 3 ]] || fail "history should list the 3 good records: $OUT"
expect_exit 0 "$RCH" fleet history --json
python3 -c 'import json, sys; assert len(json.loads(sys.argv[1])["deployments"]) == 3' "$OUT" || fail "history --json: $OUT"
expect_exit 0 "$RCH" fleet status --json

echo "--- a plan.json and a result.json of the wrong shape are named"
echo '{"id": "x", "workers": []}' >"$RCH_STATE_DIR/deployments/$FIRST/plan.json"
rm "$RCH_STATE_DIR/deployments/$FIRST/result.json"
expect_exit 1 "$RCH" fleet history show "$FIRST"
contains "$ERR" "$RCH_STATE_DIR/deployments/$FIRST/plan.json is not a deployment plan: target_version, options or artifact is missing"
[[ $ERR != *"traceback"* && $ERR != *".lua:"* ]] || fail "a Lua error instead of a message: $ERR"
mkdir "$RCH_STATE_DIR/deployments/newest"
echo '[1, 2]' >"$RCH_STATE_DIR/deployments/newest/plan.json"
expect_exit 1 "$RCH" fleet deploy --resume --no-toolchain
contains "$ERR" "$RCH_STATE_DIR/deployments/newest/plan.json is not a deployment plan: it has no id or no workers list"
echo '{"workers": 3' >"$RCH_STATE_DIR/deployments/newest/result.json"
echo '{"id": "newest", "workers": []}' >"$RCH_STATE_DIR/deployments/newest/plan.json"
expect_exit 1 "$RCH" fleet history show newest
contains "$ERR" "$RCH_STATE_DIR/deployments/newest/result.json is not a deployment result"

echo "--- a full state dir: one line, exit 1, no worker touched"
reset_workers
snap_all before
mkdir "$TMP/full"
mount -t tmpfs -o size=256k tmpfs "$TMP/full"
trap 'umount "$TMP/full" 2>/dev/null || true; deploy_cleanup' EXIT
mkdir "$TMP/full/state"
dd if=/dev/zero of="$TMP/full/fill" bs=4k 2>/dev/null || true
RCH_STATE_DIR=$TMP/full/state deploy 1
contains "$ERR" "No space left on device"
[[ $(wc -l <<<"$ERR") == 1 ]] || fail "expected one line, got: $ERR"
same_as before 1 2 3 4

echo "--- a read-only state dir or data dir: one line, exit 1, not 'another operation is running'"
for kind in state data; do
  mkdir "$TMP/ro-$kind"
  mount -t tmpfs -o ro,mode=0755 tmpfs "$TMP/ro-$kind"
done
trap 'umount "$TMP/full" "$TMP/ro-state" "$TMP/ro-data" 2>/dev/null || true; deploy_cleanup' EXIT
RCH_STATE_DIR=$TMP/ro-state deploy 1
contains "$ERR" "Read-only file system"
[[ $(wc -l <<<"$ERR") == 1 ]] || fail "expected one line, got: $ERR"
RCH_DATA_DIR=$TMP/ro-data deploy 1
contains "$ERR" "cannot lock $TMP/ro-data/fleet.lock: Read-only file system"
[[ $ERR != *"another fleet operation is running"* ]] || fail "a lock that cannot be taken reported as held: $ERR"
same_as before 1 2 3 4
echo "PASS"
