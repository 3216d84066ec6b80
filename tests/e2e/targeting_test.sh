#!/usr/bin/env bash
# --worker/--exclude patterns on a real inventory (the sshd testbed, tags
# added): ranges, globs, @tag, overlap, exclusion, @failed after a deployment
# in which two workers failed, a pattern matching nothing (exit 2, named, with
# the nearest ids), and history --worker with the same patterns.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

# w2 and w4 also carry the tag "even".
python3 - "$CFG/workers.toml" <<'EOF_PY'
import sys
p = sys.argv[1]
blocks = open(p).read().split("[[workers]]")
for i, b in enumerate(blocks):
    if 'id = "w2"' in b or 'id = "w4"' in b:
        blocks[i] = b.replace('tags = [', 'tags = ["even", ')
open(p, "w").write("[[workers]]".join(blocks))
EOF_PY
grep -c '"even"' "$CFG/workers.toml" | grep -qx 2 || fail "could not tag w2 and w4: $(cat "$CFG/workers.toml")"

# ids CMD…: the worker ids a status --json reports.
ids() {
  expect_exit 0 "$RCH" fleet status --json "$@"
  python3 -c 'import json, sys; print(" ".join(w["worker_id"] for w in json.loads(sys.argv[1])["workers"]))' "$OUT"
}
[[ $(ids --worker 'w[1-2]') == "w1 w2" ]] || fail "w[1-2]: $(ids --worker 'w[1-2]')"
[[ $(ids --worker 'w[1,3-4]') == "w1 w3 w4" ]] || fail "w[1,3-4]"
[[ $(ids --worker '@even') == "w2 w4" ]] || fail "@even"
[[ $(ids --worker 'w*' --exclude '@even') == "w1 w3" ]] || fail "w* minus @even"
[[ $(ids --worker 'w[1-3],w[2-4]' --exclude w3) == "w1 w2 w4" ]] || fail "overlap minus w3"
[[ $(ids --worker 'w4,w1') == "w1 w4" ]] || fail "inventory order"

echo "--- a pattern that matches nothing: exit 2, named, nearest ids, nothing touched"
snap_all before
expect_exit 2 "$RCH" fleet deploy --no-toolchain --worker 'w[1-2],w[7-9]'
contains "$ERR" "--worker 'w[7-9]' matches no worker; nearest: w1, w2, w3, w4"
expect_exit 2 "$RCH" fleet status --exclude '@odd'
contains "$ERR" "--exclude '@odd' matches no worker"
expect_exit 2 "$RCH" fleet verify --worker 'w[2-'
contains "$ERR" "--worker 'w[2-': '[' without ']'"
same_as before 1 2 3 4

echo "--- @failed: the workers that did not complete in the newest deployment"
expect_exit 2 "$RCH" fleet status --worker @failed
contains "$ERR" "@failed: no deployment recorded in"
"${TESTBED[@]}" stop 3 "$TB" >/dev/null
"${TESTBED[@]}" stop 4 "$TB" >/dev/null
# Piped (not a TTY, not --json): each failure exactly once, then the folded summary and the retry.
expect_exit 1 "$RCH" fleet deploy --no-toolchain
for k in 3 4; do
  # (the connect retries before it are warnings, not the failure)
  n=$(grep -v '; retry [0-9]* of [0-9]* in ' <<<"$OUT$ERR" | grep -c "w$k.*Connection refused\|Connection refused.*w$k\|^✗ w$k " || true)
  [[ $n == 1 ]] || fail "w$k's failure printed $n times: $OUT $ERR"
done
contains "$OUT" "  completed   w[1-2]"
contains "$OUT" "  failed      w[3-4]"
contains "$OUT" "Retry the workers that did not complete: rch fleet deploy --resume"
"${TESTBED[@]}" start 3 "$TB" >/dev/null
"${TESTBED[@]}" start 4 "$TB" >/dev/null
[[ $(ids --worker @failed) == "w3 w4" ]] || fail "@failed: $(ids --worker @failed)"
[[ $(ids --exclude @failed) == "w1 w2" ]] || fail "--exclude @failed"
deploy 0 --worker @failed
json 'assert sorted(st) == ["w3", "w4"] and all(w["status"] == "Completed" for w in st.values()), d'
expect_exit 2 "$RCH" fleet status --worker @failed
contains "$ERR" "--worker '@failed' matches no worker"

echo "--- history --worker takes the same patterns"
expect_exit 0 "$RCH" fleet history --json --worker 'w[3-4]'
python3 -c 'import json, sys; d = json.loads(sys.argv[1])["deployments"]; assert len(d) == 2, d' "$OUT" ||
  fail "history w[3-4]: $OUT"
expect_exit 0 "$RCH" fleet history --json --worker w1
python3 -c 'import json, sys; d = json.loads(sys.argv[1])["deployments"]; assert [x["worker_status"] for x in d] == ["Completed"], d' "$OUT" ||
  fail "history w1: $OUT"
expect_exit 2 "$RCH" fleet history --worker nope
contains "$ERR" "--worker 'nope' matches no worker"
echo "PASS"
