#!/usr/bin/env bash
# Local retention, against the real sshd testbed: [state] keep_deployments
# bounds deployments/, audit.jsonl and history.jsonl rotate at [audit]
# rotate_mb into .1 … .keep_files with the audit chain (prev_hash and seq)
# continuing across files, and every pruning is logged in the audit log.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

write_config "[state]
keep_deployments = 3
[audit]
rotate_mb = 0.001
keep_files = 2
"
AUDIT=$RCH_STATE_DIR/audit.jsonl
ids=()
for i in 1 2 3 4 5 6 7; do
  deploy 0 --worker w1
  ids+=("$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$OUT")")
done

echo "--- deployments/ keeps the newest 3"
kept=$(ls "$RCH_STATE_DIR/deployments" | LC_ALL=C sort | tr '\n' ' ')
want=$(printf '%s\n' "${ids[@]:4}" | LC_ALL=C sort | tr '\n' ' ')
[[ $kept == "$want" ]] || fail "deployments kept: $kept, want the newest 3: $want"

echo "--- audit.jsonl rotated into .1 and .2 only; the chain continues across them"
[[ -s $AUDIT.1 && -s $AUDIT.2 && ! -e $AUDIT.3 ]] || fail "rotated files: $(ls "$RCH_STATE_DIR")"
expect_exit 0 "$RCH" fleet audit verify "$AUDIT"
contains "$OUT" "in 3 files; older files were pruned), hash chain intact, head at entry"
py '
p = os.environ["RCH_STATE_DIR"] + "/audit.jsonl"
lines = []
for f in (p + ".2", p + ".1", p):
    lines += open(f, "rb").read().splitlines()
seqs = [json.loads(l)["seq"] for l in lines]
assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] > 1, seqs
for a, b in zip(lines, lines[1:]):
    assert json.loads(b)["prev_hash"] == hashlib.sha256(a).hexdigest()
ev = [json.loads(l) for l in lines]
rot = [e for e in ev if e["event_type"] == "AuditRotated"]
assert rot and all(e["details"]["file"] == p for e in rot), rot
assert any(e["details"]["removed"] == [p + ".2"] for e in rot), rot
pr = [e for e in ev if e["event_type"] == "StatePruned"]
assert pr and all(e["details"]["keep"] == 3 for e in pr), pr'

echo "--- tampering inside a rotated file is still named"
cp "$AUDIT.1" "$TMP/a1"
sed -i '1s/"timestamp":"2/"timestamp":"3/' "$AUDIT.1"
expect_exit 1 "$RCH" fleet audit verify "$AUDIT"
contains "$ERR" "hash chain broken: this entry (or the one before it) was altered"
[[ $ERR == *"$AUDIT.1:2: "* || $ERR == *"$AUDIT:1: "* ]] || fail "the break is not named after $AUDIT.1:1: $ERR"
cp "$TMP/a1" "$AUDIT.1"

echo "--- history.jsonl rotated too, and still read across its files"
[[ -s $RCH_STATE_DIR/history.jsonl.1 ]] || fail "history.jsonl was not rotated: $(ls "$RCH_STATE_DIR")"
expect_exit 0 "$RCH" fleet history --json --limit 100
n=$(python3 -c 'import json, sys; print(len(json.loads(sys.argv[1])["deployments"]))' "$OUT")
total=$(cat "$RCH_STATE_DIR"/history.jsonl* | wc -l)
[[ $n == "$total" ]] || fail "history shows $n records, the files hold $total"
echo "PASS"
