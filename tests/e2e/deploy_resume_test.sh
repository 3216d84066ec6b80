#!/usr/bin/env bash
# Durable deploy state against the real sshd testbed: kill -9 mid-deploy then
# --resume (with every worker's agent sampled for atomicity throughout),
# fleet.lock, the hash-chained audit log and --audit-log, history.jsonl, and
# --dry-run predictions that change nothing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

wait_hook "$TMP/sd"

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

# The artifact changed since the plan was made (same version, other bytes): --resume refuses.
cp "$RCH_HOME/versions/v$NEXT/rch-wkr" "$TMP/next.orig"
echo "tail" >>"$RCH_HOME/versions/v$NEXT/rch-wkr"
expect_exit 1 "$RCH" fleet deploy --resume --no-toolchain
contains "$ERR" "changed since the deployment started"
cp "$TMP/next.orig" "$RCH_HOME/versions/v$NEXT/rch-wkr"

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
contains "$ERR" "completed; nothing to resume"
# A deploy refused for a bad --audit-log (a directory) leaves nothing a later --resume would run.
dirs_before=$(deployment_dirs)
expect_exit 2 "$RCH" fleet deploy --no-toolchain --force --audit-log "$TMP"
contains "$ERR" "audit log $TMP"
[[ $(deployment_dirs) == "$dirs_before" ]] || fail "the refused deploy left a deployment behind"
expect_exit 1 "$RCH" fleet deploy --resume --no-toolchain
contains "$ERR" "completed; nothing to resume"

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
# A dry run changes nothing, so it runs while the deploy holds the lock; both
# append to the same audit log, whose chain is linked under the file's lock at
# write time, so the interleaved writers keep it intact (checked below).
expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run --worker w2
expect_exit 0 "$RCH" fleet audit verify "$RCH_STATE_DIR/audit.jsonl"
touch "$TMP/marks/go"
set +e; wait "$holder"; rc=$?; set -e
[[ $rc == 0 ]] || fail "the lock holder exited $rc: $(cat "$TMP/holder.out" "$TMP/holder.err")"
OUT=$(cat "$TMP/holder.out")
json 'assert d["id"] == "'"$HOLDER_ID"'" and d["counts"]["completed"] == 1, d'
# Released: the next deploy runs.
deploy 0 --worker w2 --version "$NEXT"
json 'assert st["w2"]["status"] == "Skipped", d'

# ---- kill -9 during the canary wait, then --resume: the canary that completed before the kill is
# still health-checked (the unhealthy agent fails it) and rolled back; the rest stays untouched.
reset_workers
stage "$OWN" "$RCH_WKR_UNHEALTHY"
snap_all canary_resume
before_dirs=$(deployment_dirs)
"$RCH" fleet deploy --no-toolchain --json --canary 25 --canary-wait 3 >"$TMP/killed.out" 2>"$TMP/killed.err" &
victim=$!
BACKGROUND+=("$victim")
# Killed once the canary (w1) completed, during the 3 s wait.
CANARY=""
for _ in $(seq 200); do
  CANARY=$(comm -13 <(echo "$before_dirs") <(deployment_dirs))
  [[ -n $CANARY ]] && grep -qs '"status":"Completed"' "$RCH_STATE_DIR/deployments/$CANARY/journal.jsonl" && break
  sleep 0.05
done
kill -9 "$victim"
set +e; wait "$victim"; rc=$?; set -e
[[ $rc == 137 ]] || fail "the canary deploy exited $rc before the kill: $(cat "$TMP/killed.out" "$TMP/killed.err")"
[[ $CANARY =~ ^[0-9a-f-]{36}$ ]] || fail "expected one new deployment, got: $CANARY"
export CANARY
installed 1 "$OWN" "$UNHEALTHY_SHA"
same_as canary_resume 2 3 4
# Its dry run plans what is left: the three workers after the canary, not the whole plan.
expect_exit 0 "$RCH" fleet deploy --no-toolchain --resume --dry-run --json
json 'assert [p["worker_id"] for p in d["predictions"]] == ["w2", "w3", "w4"], d["predictions"]'
deploy 1 --resume
json '
assert d["id"] == os.environ["CANARY"] and d["resumed"] is True, d
assert d["reason"].startswith("canary failed: canary w1 reports unhealthy"), d["reason"]
w1 = st["w1"]
assert w1["status"] == "RolledBack" and w1["error"].startswith("canary failed: "), w1
for w in ("w2", "w3", "w4"): assert st[w]["status"] == "Skipped" and st[w]["steps"] == [], st[w]'
no_agent 1
same_as canary_resume 2 3 4
unstage "$OWN"

# ---- --audit-log FILE gets the same events as the state audit log, in its own hash chain.
deploy 0 --force --worker w3,w4 --audit-log "$TMP/extra-audit.jsonl"
A1=$(json 'print(d["id"])')
deploy 0 --worker w1 --audit-log "$TMP/extra-audit.jsonl" --verify --force
A2=$(json 'print(d["id"])')
[[ $(json 'print(st["w1"]["status"])') == Completed ]] || fail "verify of a healthy agent failed: $OUT"
A1=$A1 A2=$A2 TMP=$TMP py '
def strip(e): return (e["deployment_id"], e["event_type"], e["worker_id"], json.dumps(e["details"], sort_keys=True), e["user"], e["machine"])
extra = audit(os.environ["TMP"] + "/extra-audit.jsonl")
main = [e for e in audit() if e["deployment_id"] in (os.environ["A1"], os.environ["A2"])]
assert [strip(e) for e in extra] == [strip(e) for e in main], (extra, main)
assert {e["deployment_id"] for e in extra} == {os.environ["A1"], os.environ["A2"]}, extra'

# ---- Every audit line (both files): the spec's fields plus prev_hash, and the chain verifies.
TMP=$TMP py '
import socket, getpass, subprocess
TYPES = {"DeploymentStarted", "DeploymentCompleted", "DeploymentFailed", "WorkerPreflight", "WorkerDrainStarted",
    "WorkerDrainCompleted", "WorkerTransferStarted", "WorkerTransferCompleted", "WorkerInstallStarted",
    "WorkerInstallCompleted", "WorkerVerifyStarted", "WorkerVerifyCompleted", "WorkerFailed", "WorkerRolledBack",
    "CanaryStarted", "CanaryPassed", "CanaryFailed"}
user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
for path in (os.environ["RCH_STATE_DIR"] + "/audit.jsonl", os.environ["TMP"] + "/extra-audit.jsonl"):
    raw = open(path, "rb").read()
    assert raw.endswith(b"\n"), path
    lines = raw[:-1].split(b"\n")
    prev = "0" * 64
    for n, line in enumerate(lines, 1):
        e = json.loads(line)
        assert set(e) == {"timestamp", "deployment_id", "event_type", "worker_id", "details", "user", "machine",
            "prev_hash", "seq"}, (path, n, e)
        assert e["prev_hash"] == prev, ("chain broken", path, n)
        assert e["seq"] == n and line.startswith(b"{\"prev_hash\":\"" + prev.encode() + b"\",\"seq\":%d," % n), (path, n)
        prev = hashlib.sha256(line).hexdigest()
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", e["timestamp"]), e
        assert re.match(r"^[0-9a-f-]{36}$", e["deployment_id"]), e
        assert e["event_type"] in TYPES, e
        assert e["worker_id"] is None or e["worker_id"] in ("w1", "w2", "w3", "w4"), e
        assert isinstance(e["details"], dict), e
        assert e["user"] == user and e["machine"] == socket.gethostname(), e
    head = open(path + ".head").read()
    assert json.loads(head) == {"seq": len(lines), "sha256": prev}, (path, head)
    # Events of a deployment start with DeploymentStarted; timestamps never go backwards.
    ts = [json.loads(l)["timestamp"] for l in lines]
    assert ts == sorted(ts), path
    seen = set()
    for l in lines:
        e = json.loads(l)
        if e["deployment_id"] not in seen:
            assert e["event_type"] == "DeploymentStarted", e
            seen.add(e["deployment_id"])
# The killed-and-resumed deployment: started twice (the second resumed), completed once.
ev = [e for e in audit() if e["deployment_id"] == os.environ["KILLED"]]
started = [e["details"]["resumed"] for e in ev if e["event_type"] == "DeploymentStarted"]
assert started == [False, True], started
assert [e["event_type"] for e in ev].count("DeploymentCompleted") == 1 and ev[-1]["event_type"] == "DeploymentCompleted", ev
'

# ---- history.jsonl: one record per finished deployment (not the refused one), with the spec's fields.
py '
h = load(os.environ["RCH_STATE_DIR"] + "/history.jsonl")
d = os.environ["RCH_STATE_DIR"] + "/deployments"
finished = {i for i in os.listdir(d) if os.path.exists(d + "/" + i + "/result.json")}
assert [r["strategy"] for r in h].count("canary") == 1, h
assert sorted(r["id"] for r in h) == sorted(finished) and len(h) == len(finished) == len(os.listdir(d)), (h, finished)
for r in h:
    for k in ("id", "started_at", "completed_at", "duration_secs", "user", "machine", "target_version", "strategy",
              "outcome", "counts"):
        assert k in r, (k, r)
    assert isinstance(r["duration_secs"], (int, float)) and r["duration_secs"] >= 0, r
    assert r["strategy"] in ("all_at_once", "canary"), r
    assert set(r["counts"]) == {"completed", "failed", "skipped", "rolled_back", "aborted"}, r
k = [r for r in h if r["id"] == os.environ["KILLED"]]
assert len(k) == 1 and k[0]["target_version"] == os.environ["NEXT"] and k[0]["counts"]["completed"] == 4, k
assert k[0]["outcome"] == "completed", k'

# ---- Dry run: predictions for a mixed fleet, the real artifact size, and nothing changes.
# w1 runs OWN -> Upgrade (upload); w2 is empty -> Install (upload); w3 runs NEXT -> Skip;
# w4 runs OWN with NEXT already uploaded -> Upgrade without upload.
reset_workers
deploy 0 --worker w1,w4
deploy 0 --worker w3,w4 --version "$NEXT"
deploy 0 --worker w4 --version "$OWN"
installed 4 "$OWN" "$OWN_SHA"
snap_all dry
cp "$RCH_STATE_DIR/history.jsonl" "$TMP/history.before"
dirs_dry=$(deployment_dirs)
SIZE=$(stat -c %s "$RCH_WKR_NEXT")
export SIZE
expect_exit 0 "$RCH" fleet deploy --no-toolchain --version "$NEXT" --dry-run --json
json '
mb = int(os.environ["SIZE"]) / 1e6
assert d["dry_run"] is True and d["plan"]["target_version"] == os.environ["NEXT"], d
p = {x["worker_id"]: x for x in d["predictions"]}
want = {"w1": ("Upgrade", os.environ["OWN"], mb), "w2": ("Install", None, mb),
        "w3": ("Skip", os.environ["NEXT"], 0), "w4": ("Upgrade", os.environ["OWN"], 0)}
for w, (action, cur, transfer) in want.items():
    x = p[w]
    assert x["action"] == action and x["current_version"] == cur, x  # null, not absent, when none
    assert abs(x["estimated_transfer_mb"] - transfer) < 1e-9, (x, transfer)
    assert x["target_version"] == os.environ["NEXT"], x
assert abs(d["resource_requirements"]["total_transfer_mb"] - 2 * mb) < 1e-9, d["resource_requirements"]
assert d["resource_requirements"]["peak_parallelism"] == 3, d["resource_requirements"]  # w3 is skipped
assert d["plan"]["artifact"]["size"] == int(os.environ["SIZE"]), d["plan"]["artifact"]
assert d["plan"]["artifact"]["sha256"] == os.environ["NEXT_SHA"], d["plan"]["artifact"]'
expect_exit 0 "$RCH" fleet deploy --no-toolchain --version "$NEXT" --dry-run --force --json
json '
p = {x["worker_id"]: x for x in d["predictions"]}
assert p["w3"]["action"] == "Reinstall" and p["w3"]["estimated_transfer_mb"] == 0, p["w3"]'
expect_exit 0 "$RCH" fleet deploy --no-toolchain --version "$NEXT" --dry-run
MB=$(python3 -c "print('%.1f' % (int('$SIZE') / 1e6))")
TOTAL=$(python3 -c "print('%.1f' % (2 * int('$SIZE') / 1e6))")
for line in "\[UPGRADE\] +w1 $OWN -> $NEXT \(~${MB}MB" "\[INSTALL\] +w2 none -> $NEXT \(~${MB}MB" \
  "\[SKIP\] +w3 $NEXT -> $NEXT \(~0.0MB" "\[UPGRADE\] +w4 $OWN -> $NEXT \(~0.0MB" "^  Total transfer: $TOTAL MB$" \
  "^Would deploy $NEXT to 3 of 4 workers\. Dry run: nothing was changed\.$"; do
  grep -qE -- "$line" <<<"$OUT" || fail "dry run output lacks /$line/: $OUT"
done
# Toward rch's own version: w3 (NEXT) is a downgrade, w1/w4 are skipped.
expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run --json
json '
p = {x["worker_id"]: x["action"] for x in d["predictions"]}
assert p == {"w1": "Skip", "w2": "Install", "w3": "Downgrade", "w4": "Skip"}, p'
# A worker preflight would stop is BLOCKED, with the issue and its recommendation;
# w3 already runs $NEXT and needs nothing: skipped, its issue only a warning.
write_config $'[preflight]\nmin_disk_mb = 99999999\n'
expect_exit 0 "$RCH" fleet deploy --no-toolchain --version "$NEXT" --dry-run --json
json '
p = {x["worker_id"]: x["action"] for x in d["predictions"]}
assert p == {"w1": "Blocked", "w2": "Blocked", "w3": "Skip", "w4": "Blocked"}, d["predictions"]
assert all(x["estimated_transfer_mb"] == 0 for x in d["predictions"]), d["predictions"]
iss = [i for i in d["potential_issues"] if i["severity"] == "error"]
assert [i["worker_id"] for i in iss] == ["w1", "w2", "w4"], iss
assert [i["worker_id"] for i in d["potential_issues"] if i["severity"] == "warning"] == ["w3"], d["potential_issues"]
assert all(i["issue"].startswith("disk_space: ") and i["recommendation"] for i in iss), iss
assert d["resource_requirements"]["total_transfer_mb"] == 0, d
assert d["resource_requirements"]["peak_parallelism"] == 0 and d["estimated_duration_secs"] == 0, d'
expect_exit 0 "$RCH" fleet deploy --no-toolchain --version "$NEXT" --dry-run
contains "$OUT" "Would deploy $NEXT to 0 of 4 workers."
grep -qE '^  \[BLOCKED\] +w2 none -> ' <<<"$OUT" || fail "no BLOCKED line for w2: $OUT"
grep -qE '^  \[ERROR\] w1: disk_space: [0-9]+ MB free, 99999999 MB required$' <<<"$OUT" || fail "no disk issue: $OUT"
write_config
same_as dry 1 2 3 4
[[ $(deployment_dirs) == "$dirs_dry" ]] || fail "the dry run created a deployment"
cmp -s "$RCH_STATE_DIR/history.jsonl" "$TMP/history.before" || fail "the dry run wrote history"

echo "deploy_resume_test: ok"
