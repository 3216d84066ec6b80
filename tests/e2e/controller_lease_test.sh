#!/usr/bin/env bash
# Two controllers, one fleet, against the real sshd testbed: each worker's
# controller lease (an flock on <root>/controller.lock, held by a process on
# the worker while rch works on that worker, tied to its SSH session) keeps a
# second controller (its own state and lock dirs: another machine) from
# changing a worker the first one is deploying. The second is told who holds
# it, can wait for it with --wait-lock (two deployments over overlapping
# workers then take turns per worker), and gets it at once when the first one dies.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

wait_hook "$TMP/sd"
stage "$NEXT" "$RCH_WKR_NEXT"
# Controller B: the same workers and artifacts, its own state, locks and audit.
mkdir -p "$TMP/b/state" "$TMP/b/data"
as_b() { RCH_STATE_DIR=$TMP/b/state RCH_DATA_DIR=$TMP/b/data "$@"; }
# lease_free K: nobody holds worker K's controller lease.
lease_free() { flock -n "$(root_of "$1")/controller.lock" true; }

echo "--- A deploys $NEXT and holds between transfer and install"
"$RCH" --script-dir "$TMP/sd" fleet deploy --no-toolchain --json --version "$NEXT" >"$TMP/a.out" 2>"$TMP/a.err" &
a=$!
BACKGROUND+=("$a")
for k in 1 2 3 4; do wait_for "$TMP/marks/w$k" 30; done
A_ID=$(ls "$RCH_STATE_DIR/deployments"); export A_ID
contains "$(cat "$(root_of 1)/controller.lock")" "deployment $A_ID, since "
snap_all held

echo "--- B deploying to w1 is refused for w1, naming A; nothing of A's is touched"
as_b expect_exit 1 "$RCH" fleet deploy --no-toolchain --json --worker w1
json '
w = st["w1"]
assert w["status"] == "Failed" and w["error"].startswith("preflight: another controller is changing this worker (lease held by "), w
assert "deployment " + os.environ["A_ID"] in w["error"] and "retry with --wait-lock SECONDS" in w["error"], w'
same_as held 1

echo "--- B rolling back w2 is refused the same way"
as_b expect_exit 1 "$RCH" fleet rollback --worker w2 --json
contains "$OUT" "another controller is changing this worker (lease held by "
same_as held 2

echo "--- B with --wait-lock waits for A to finish, then deploys"
as_b "$RCH" fleet deploy --no-toolchain --json --worker w3 --wait-lock 60 -v >"$TMP/b.out" 2>"$TMP/b.err" &
b=$!
BACKGROUND+=("$b")
for _ in $(seq 100); do grep -q "waiting up to 60 s for the controller lease" "$TMP/b.err" && break; sleep 0.1; done
contains "$(cat "$TMP/b.err")" "worker w3: waiting up to 60 s for the controller lease held by "
kill -0 "$b" || fail "B did not wait: $(cat "$TMP/b.err")"
# A third controller deploys A's version to w4: its first read (no lease) sees the old
# agent, so it waits for the lease; what it reads under the lease is A's finished install:
# nothing to do.
mkdir -p "$TMP/c/state" "$TMP/c/data"
RCH_STATE_DIR=$TMP/c/state RCH_DATA_DIR=$TMP/c/data "$RCH" fleet deploy --no-toolchain --json --worker w4 --version "$NEXT" --wait-lock 60 -v \
  >"$TMP/b4.out" 2>"$TMP/b4.err" &
b4=$!
BACKGROUND+=("$b4")
for _ in $(seq 100); do grep -q "waiting up to 60 s for the controller lease" "$TMP/b4.err" && break; sleep 0.1; done
contains "$(cat "$TMP/b4.err")" "worker w4: waiting up to 60 s for the controller lease held by "
touch "$TMP/marks/go"
wait "$a" || fail "A failed: $(cat "$TMP/a.err")"
wait "$b" || fail "B failed after waiting: $(cat "$TMP/b.err")"
OUT=$(<"$TMP/b.out") json 'assert st["w3"]["status"] == "Completed", d'
wait "$b4" || fail "C (w4) failed after waiting: $(cat "$TMP/b4.err")"
OUT=$(<"$TMP/b4.out") json 'assert st["w4"]["status"] == "Skipped" and st["w4"]["error"] == "already at " + os.environ["NEXT"], d'
installed 3 "$OWN" "$OWN_SHA"
for k in 1 2 4; do installed "$k" "$NEXT" "$NEXT_SHA" "$A_ID"; done
for k in 1 2 3 4; do lease_free "$k" || fail "w$k: the lease is still held after both controllers ended"; done

echo "--- A and B deploy to overlapping workers at once, both waiting: each worker is changed by one at a time"
a_lines=$(wc -l <"$RCH_STATE_DIR/audit.jsonl")
b_lines=$(wc -l <"$TMP/b/state/audit.jsonl")
"$RCH" fleet deploy --no-toolchain --json --version "$NEXT" --force --worker 'w[1-3]' --wait-lock 60 \
  >"$TMP/a2.out" 2>"$TMP/a2.err" &
a=$!
as_b "$RCH" fleet deploy --no-toolchain --json --force --worker 'w[2-4]' --wait-lock 60 >"$TMP/b2.out" 2>"$TMP/b2.err" &
b=$!
BACKGROUND+=("$a" "$b")
wait "$a" || fail "A failed: $(cat "$TMP/a2.out" "$TMP/a2.err")"
wait "$b" || fail "B failed: $(cat "$TMP/b2.out" "$TMP/b2.err")"
OUT_DIR=$TMP A_LOG=$RCH_STATE_DIR/audit.jsonl B_LOG=$TMP/b/state/audit.jsonl A_FROM=$a_lines B_FROM=$b_lines py '
def spans(path, skip):
    out = {}
    for e in load(path)[int(skip):]:
        w = e.get("worker_id")
        if w:
            first, last = out.get(w, (e["timestamp"], e["timestamp"]))
            out[w] = (min(first, e["timestamp"]), max(last, e["timestamp"]))
    return out
a, b = spans(os.environ["A_LOG"], os.environ["A_FROM"]), spans(os.environ["B_LOG"], os.environ["B_FROM"])
assert sorted(a) == ["w1", "w2", "w3"] and sorted(b) == ["w2", "w3", "w4"], (a, b)
for w in ("w2", "w3"):
    assert a[w][1] < b[w][0] or b[w][1] < a[w][0], ("both controllers changed " + w + " at once", a[w], b[w])
    last = "B" if a[w][1] < b[w][0] else "A"
    print(w + ": " + ("A" if last == "B" else "B") + " went first", file=sys.stderr)
    open(os.environ["OUT_DIR"] + "/last." + w, "w").write(last)'
for k in 2 3; do
  if [[ $(<"$TMP/last.w$k") == A ]]; then installed "$k" "$NEXT" "$NEXT_SHA"; else installed "$k" "$OWN" "$OWN_SHA"; fi
done
installed 1 "$NEXT" "$NEXT_SHA"
installed 4 "$OWN" "$OWN_SHA"

echo "--- A killed while holding: its leases are freed at once, B deploys"
rm -f "$TMP/marks/"*
"$RCH" --script-dir "$TMP/sd" fleet deploy --no-toolchain --json --version "$NEXT" --force --worker w4 >/dev/null 2>&1 &
a=$!
BACKGROUND+=("$a")
wait_for "$TMP/marks/w4" 30
! lease_free 4 || fail "w4: no process holds the lease while A deploys"
kill -9 "$a"
wait "$a" || true
for _ in $(seq 50); do lease_free 4 && break; sleep 0.1; done
lease_free 4 || fail "w4: the lease outlived the killed controller"
as_b expect_exit 0 "$RCH" fleet deploy --no-toolchain --json --worker w4
installed 4 "$OWN" "$OWN_SHA"
echo "PASS"
