#!/usr/bin/env bash
# Durable deploy state against the real sshd testbed: kill -9 mid-deploy then
# --resume (with every worker's agent sampled for atomicity throughout),
# fleet.lock, the hash-chained audit log and --audit-log, history.jsonl, and
# --dry-run predictions that change nothing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

# A pre_install hook that announces each worker and waits for $TEST_MARKS/go (up to 30 s).
mkdir -p "$TMP/sd/hooks" "$TMP/marks"
cat >"$TMP/sd/hooks/pre_install.lua" <<'EOF'
local rch = require "rch"
return function(ctx)
  local marks = os.getenv("TEST_MARKS")
  io.open(marks .. "/" .. ctx.worker.id, "w"):close()
  for _ = 1, 600 do
    local f = io.open(marks .. "/go")
    if f then f:close() return true end
    rch.sleep(0.05)
  end
  return false, "test hook: no go-ahead"
end
EOF
export TEST_MARKS=$TMP/marks
deployment_dirs() { ls "$RCH_STATE_DIR/deployments" | LC_ALL=C sort; }

# ---- kill -9 mid-deploy, then --resume. Start from the whole fleet on OWN, deploy NEXT.
deploy 0
stage "$NEXT" "$RCH_WKR_NEXT"
before_dirs=$(deployment_dirs)

# Every 50 ms, each worker's bin/rch-wkr either does not exist or runs and reports OWN or NEXT:
# never a dangling link, a partial file or another version.
sampler() {
  local n=0 k p v
  while [[ ! -e $TMP/sampler.stop ]]; do
    for k in 1 2 3 4; do
      p=$(root_of "$k")/bin/rch-wkr
      if [[ -e $p || -L $p ]]; then
        if ! v=$("$p" --version 2>&1); then
          echo "w$k: bin/rch-wkr does not run: $v ($(ls -la "$(root_of "$k")" "$(root_of "$k")/bin" 2>&1))" >>"$TMP/sampler.bad"
        elif [[ $v != "rch-wkr $OWN" && $v != "rch-wkr $NEXT" ]]; then
          echo "w$k: bin/rch-wkr reports '$v'" >>"$TMP/sampler.bad"
        fi
      fi
    done
    n=$((n + 1))
    echo "$n" >"$TMP/sampler.count"
    sleep 0.05
  done
}
sampler &
BACKGROUND+=($!)
sampler_pid=$!

"$RCH" --script-dir "$TMP/sd" fleet deploy --no-toolchain --json --version "$NEXT" >"$TMP/killed.out" 2>"$TMP/killed.err" &
victim=$!
BACKGROUND+=("$victim")
for k in 1 2 3 4; do wait_for "$TMP/marks/w$k" 30; done
sleep 0.2
kill -9 "$victim"
set +e; wait "$victim"; rc=$?; set -e
[[ $rc == 137 ]] || fail "the deploy exited $rc before the kill: $(cat "$TMP/killed.out" "$TMP/killed.err")"
[[ ! -s $TMP/killed.out ]] || fail "the killed deploy printed a result: $(cat "$TMP/killed.out")"
KILLED=$(comm -13 <(echo "$before_dirs") <(deployment_dirs))
[[ $KILLED =~ ^[0-9a-f-]{36}$ ]] || fail "expected exactly one new deployment, got: $KILLED"
export KILLED
[[ -s $RCH_STATE_DIR/deployments/$KILLED/plan.json && ! -e $RCH_STATE_DIR/deployments/$KILLED/result.json ]] ||
  fail "the killed deployment should have a plan and no result"
# It was killed before any install: every worker still runs OWN, with NEXT uploaded next to it.
for k in 1 2 3 4; do
  installed "$k" "$OWN" "$OWN_SHA"
  cmp -s "$(root_of "$k")/versions/v$NEXT/rch-wkr" "$RCH_WKR_NEXT" || fail "w$k: NEXT was not uploaded before the kill"
done
py '
j = load(os.environ["RCH_STATE_DIR"] + "/deployments/" + os.environ["KILLED"] + "/journal.jsonl")
done = [l for l in j if l.get("step") == "transfer" and l.get("event") == "completed"]
assert sorted(l["worker"] for l in done) == ["w1", "w2", "w3", "w4"], j
assert not any(l.get("step") == "install" for l in j), j'

# The resume takes the plan (version, options) from disk; the test hook is not on this command line.
deploy 0 --resume
json '
assert d["id"] == os.environ["KILLED"] and d["resumed"] is True, d
assert d["target_version"] == os.environ["NEXT"] and d["outcome"] == "completed", d
assert d["counts"] == {"completed": 4, "failed": 0, "skipped": 0, "rolled_back": 0, "aborted": 0}, d["counts"]
for w in d["workers"]:
    assert w["status"] == "Completed" and w["current_version"] == os.environ["OWN"], w
    t = [s for s in w["steps"] if s["name"] == "transfer"][0]
    assert t["output"] == "already present, sha256 matches", t'
py '
r = json.load(open(os.environ["RCH_STATE_DIR"] + "/deployments/" + os.environ["KILLED"] + "/result.json"))
assert r["id"] == os.environ["KILLED"] and r["counts"]["completed"] == 4 and r["resumed"] is True, r'
for k in 1 2 3 4; do installed "$k" "$NEXT" "$NEXT_SHA" "$KILLED"; done
[[ $(deployment_dirs | wc -l) == $(($(echo "$before_dirs" | wc -l) + 1)) ]] || fail "--resume created a new deployment"
sleep 0.2
touch "$TMP/sampler.stop"
wait "$sampler_pid"
[[ ! -e $TMP/sampler.bad ]] || fail "the agent was broken while deploying: $(cat "$TMP/sampler.bad")"
(($(<"$TMP/sampler.count") >= 10)) || fail "the sampler ran only $(<"$TMP/sampler.count") rounds"

# Nothing left to resume.
expect_exit 1 "$RCH" fleet deploy --resume --no-toolchain
contains "$ERR" "no unfinished deployment"

# ---- fleet.lock: while one deploy holds it, a second one is refused, naming the holder.
rm -f "$TMP"/marks/*
"$RCH" --script-dir "$TMP/sd" fleet deploy --no-toolchain --json --force --worker w1 >"$TMP/holder.out" 2>"$TMP/holder.err" &
holder=$!
BACKGROUND+=("$holder")
wait_for "$TMP/marks/w1"
dirs_locked=$(deployment_dirs)
expect_exit 1 "$RCH" fleet deploy --no-toolchain --worker w2
contains "$ERR" "another fleet operation is running"
contains "$ERR" "$RCH_DATA_DIR/fleet.lock is held by pid $holder"
HOLDER_ID=$(grep -oE 'rch fleet deploy [0-9a-f-]{36}' <<<"$ERR" | cut -d' ' -f4)
[[ -n $HOLDER_ID ]] || fail "the refusal does not name the holder's deployment: $ERR"
[[ $(deployment_dirs) == "$dirs_locked" ]] || fail "the refused deploy created a deployment"
touch "$TMP/marks/go"
set +e; wait "$holder"; rc=$?; set -e
[[ $rc == 0 ]] || fail "the lock holder exited $rc: $(cat "$TMP/holder.out" "$TMP/holder.err")"
OUT=$(cat "$TMP/holder.out")
json 'assert d["id"] == "'"$HOLDER_ID"'" and d["counts"]["completed"] == 1, d'
# Released: the next deploy runs.
deploy 0 --worker w2
json 'assert st["w2"]["status"] == "Skipped", d'

# ---- --audit-log FILE gets the same events as the state audit log, in its own hash chain.
deploy 0 --force --worker w3,w4 --audit-log "$TMP/extra-audit.jsonl"
A1=$(json 'print(d["id"])')
deploy 1 --worker w1 --audit-log "$TMP/extra-audit.jsonl" --verify --force
A2=$(json 'print(d["id"])')
[[ $(json 'print(st["w1"]["status"])') == Completed ]] || fail "verify of a healthy agent failed: $OUT"
A1=$A1 A2=$A2 py '
def strip(e): return (e["deployment_id"], e["event_type"], e["worker_id"], json.dumps(e["details"], sort_keys=True), e["user"], e["machine"])
extra = audit(os.environ["TMP"] + "/extra-audit.jsonl")
main = [e for e in audit() if e["deployment_id"] in (os.environ["A1"], os.environ["A2"])]
assert [strip(e) for e in extra] == [strip(e) for e in main], (extra, main)
assert {e["deployment_id"] for e in extra} == {os.environ["A1"], os.environ["A2"]}, extra' TMP="$TMP"
exit_code_note=""

echo "deploy_resume_test: ok"
