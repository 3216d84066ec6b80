#!/usr/bin/env bash
# The spec's fleet E2E script (spec/fleet.md, "E2E Test Script"), rewritten so
# that every check can fail: each test runs the command under test, checks its
# exit code and asserts the real outcome (output, --json fields, state files,
# what the simulated workers run afterwards). RCH_MOCK_SSH=1: the workers are
# the in-memory simulated fleet, persisted in $RCH_STATE_DIR/sim-fleet.json (+ .journal)
# between commands. The tests build on each other (7 deploys what 8 verifies,
# 12 counts the deployments of 7-11), so they run in order and the script
# stops at the first failure.
#
#   RCH=path/to/rch bash scripts/e2e_fleet_test.sh     (default: build/rch)
#   RCH_WKR_NEXT=…   the next-version agent for test 10 (default: tests/rch-wkr-next next to rch)
#   E2E_KEEP=1       keep the temp dir (its path is printed)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RCH="${RCH:-$SCRIPT_DIR/../build/rch}"
[[ -x $RCH ]] || { echo "FAIL: no rch binary at $RCH (build with: ninja -C build)" >&2; exit 1; }
RCH="$(cd "$(dirname "$RCH")" && pwd)/$(basename "$RCH")"
BIN_DIR=$(dirname "$RCH")
WKR="$BIN_DIR/rch-wkr"
WKR_NEXT="${RCH_WKR_NEXT:-$BIN_DIR/tests/rch-wkr-next}"
[[ -x $WKR ]] || { echo "FAIL: no rch-wkr next to rch ($WKR)" >&2; exit 1; }
[[ -x $WKR_NEXT ]] || { echo "FAIL: no next-version agent at $WKR_NEXT (set RCH_WKR_NEXT)" >&2; exit 1; }

TEST_DIR=$(mktemp -d)
LOG_FILE="$TEST_DIR/e2e_fleet.log"
BACKGROUND=()
cleanup() {
  local pid
  for pid in "${BACKGROUND[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [[ ${E2E_KEEP:-} == 1 ]]; then echo "kept $TEST_DIR"; else rm -rf "$TEST_DIR"; fi
}
trap cleanup EXIT

# Everything rch reads or writes lives under TEST_DIR; nothing of the user's is touched.
export RCH_MOCK_SSH=1 NO_COLOR=1
export RCH_CONFIG_DIR="$TEST_DIR/config" RCH_STATE_DIR="$TEST_DIR/state" RCH_DATA_DIR="$TEST_DIR/data"
export RCH_HOME="$TEST_DIR/home" RCH_CACHE_DIR="$TEST_DIR/cache"
unset RCH_LOG_LEVEL RCH_SIM_LATENCY_MS RCH_SIM_BANDWIDTH_MBPS RCH_SIM_FAULT_RATE RCH_SIM_SEED RCH_SIM_FAULTS
mkdir -p "$RCH_CONFIG_DIR" "$RCH_STATE_DIR" "$RCH_DATA_DIR" "$RCH_HOME" "$RCH_CACHE_DIR"
SIM="$RCH_STATE_DIR/sim-fleet.json"
WORKERS=(mock-worker-1 mock-worker-2 mock-worker-3 mock-worker-4)

OWN=$("$WKR" --version); OWN=${OWN#rch-wkr }
NEXT=$("$WKR_NEXT" --version); NEXT=${NEXT#rch-wkr }
[[ $OWN =~ ^[0-9]+\.[0-9]+\.[0-9]+$ && $NEXT =~ ^[0-9]+\.[0-9]+\.[0-9]+$ && $OWN != "$NEXT" ]] ||
  { echo "FAIL: unexpected agent versions: rch-wkr '$OWN', next '$NEXT'" >&2; exit 1; }
[[ $("$RCH" --version) == "rch $OWN" ]] || { echo "FAIL: rch and rch-wkr versions differ" >&2; exit 1; }
SIZE=$(stat -c %s "$WKR")
OWN_SHA=$(sha256sum "$WKR" | cut -d' ' -f1)
export OWN NEXT SIZE OWN_SHA SIM TEST_DIR

log() { echo "[$(date -Iseconds)] $*" >>"$LOG_FILE"; }
TEST=""
begin() { TEST="$1"; T0=$EPOCHREALTIME; log "$TEST"; }
pass() {
  local secs
  secs=$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  echo "PASS: $TEST (${secs}s)"
  log "PASS: $TEST (${secs}s)"
}
fail() {
  echo "FAIL: $TEST: $*" >&2
  log "FAIL: $TEST: $*"
  exit 1
}

# run WANT_EXIT ARGS…: runs rch ARGS…, stdout in $OUT, stderr in $ERR; the exit code must be WANT_EXIT.
run() {
  local want=$1; shift
  log "  \$ rch $*"
  set +e
  "$RCH" "$@" >"$TEST_DIR/out" 2>"$TEST_DIR/err"
  local got=$?
  set -e
  OUT=$(cat "$TEST_DIR/out"); ERR=$(cat "$TEST_DIR/err")
  { echo "$OUT"; echo "$ERR"; } | sed 's/^/    /' >>"$LOG_FILE"
  [[ $got == "$want" ]] || fail "exit $got (want $want) from: rch $*
--- stdout:
$OUT
--- stderr:
$ERR"
}
# has REGEX: a line of $OUT matches (grep -E).
has() { grep -qE -- "$1" <<<"$OUT" || fail "output lacks /$1/:
$OUT"; }
hasnt() { ! grep -qE -- "$1" <<<"$OUT" || fail "output should not match /$1/:
$OUT"; }
PY_PRELUDE='
import json, sys, os, re, hashlib
def lines(p): return [json.loads(l) for l in open(p) if l.strip()]
def sim():
    # The snapshot, then the journal of changes since (the last line of a worker wins).
    p = os.environ["SIM"]
    w = json.load(open(p))["workers"] if os.path.exists(p) else {}
    for r in (lines(p + ".journal") if os.path.exists(p + ".journal") else []):
        w[r.pop("id")] = r
    return w
'
# py 'PYTHON': runs PYTHON with d = the JSON of $OUT (None if it is not JSON); an exception fails the test.
py() {
  python3 -c "$PY_PRELUDE
try: d = json.loads(sys.stdin.read())
except ValueError: d = None
$1" <<<"$OUT" >>"$LOG_FILE" 2>&1 || fail "check failed:$1
--- stdout: $OUT
--- stderr: $ERR
--- python: $(tail -5 "$LOG_FILE")"
}
# The deployment id of a pretty-printed deploy --json result in $OUT.
result_id() { sed -nE 's/^  "id": "([0-9a-f-]{36})",?$/\1/p' <<<"$OUT"; }
deployments() { ls "$RCH_STATE_DIR/deployments" 2>/dev/null | LC_ALL=C sort; }  # ids: [0-9a-f-] only
# versions_are V1 V2 V3 V4: fleet status --json reports these versions (none = no agent).
versions_are() {
  run 0 fleet status --json
  WANT="$*" py '
got = [w["version"] for w in d["workers"]]
want = [None if v == "none" else v for v in os.environ["WANT"].split()]
assert [w["worker_id"] for w in d["workers"]] == ["mock-worker-%d" % i for i in (1, 2, 3, 4)], d
assert got == want, (got, want)'
}

# The spec's four mock workers.
cat >"$RCH_CONFIG_DIR/workers.toml" <<'EOF'
[[workers]]
id = "mock-worker-1"
host = "localhost"
user = "testuser"

[[workers]]
id = "mock-worker-2"
host = "localhost"
user = "testuser"

[[workers]]
id = "mock-worker-3"
host = "localhost"
user = "testuser"

[[workers]]
id = "mock-worker-4"
host = "localhost"
user = "testuser"
EOF
log "=== RCH Fleet Deployment E2E Test: $RCH ($OWN, next $NEXT), RCH_MOCK_SSH=1, $TEST_DIR ==="
STARTED=$SECONDS

# ---------------------------------------------------------------------------
begin "Test 1: fleet status shows the configured workers"
run 0 fleet status
has '^WORKER +ADDRESS +REACHABLE +VERSION'
for w in "${WORKERS[@]}"; do has "^$w +testuser@localhost:22 +yes +none "; done
[[ $(grep -c '^mock-worker-' <<<"$OUT") == 4 ]] || fail "expected exactly 4 worker rows: $OUT"
pass

# ---------------------------------------------------------------------------
begin "Test 2: fleet status --json"
run 0 fleet status --json
py '
ids = [w["worker_id"] for w in d["workers"]]
assert ids == ["mock-worker-%d" % i for i in (1, 2, 3, 4)], ids
for w in d["workers"]:
    assert w["reachable"] is True and w["version"] is None and w["error"] is None, w
    assert w["host"] == "localhost" and w["user"] == "testuser" and w["port"] == 22, w'
pass

# ---------------------------------------------------------------------------
begin "Test 3: dry run shows the plan and changes nothing"
run 0 fleet deploy --dry-run
MB=$(awk -v s="$SIZE" 'BEGIN { printf "%.1f", s / 1e6 }')
TOTAL=$(awk -v s="$SIZE" 'BEGIN { printf "%.1f", 4 * s / 1e6 }')
has '^=== Deployment Dry Run ===$'
has '^Strategy: all at once, parallel 4$'
has "^Target version: $OWN\$"
has '^Workers: 4$'
has '^Estimated duration: [0-9]+s$'
for w in "${WORKERS[@]}"; do has "^  \[INSTALL\] +$w none -> $OWN \(~${MB}MB, ~[0-9]+s\)\$"; done
[[ $(grep -c '^  \[' <<<"$OUT") == 4 ]] || fail "expected 4 worker actions: $OUT"
has "^  Total transfer: $TOTAL MB\$"
has '^  Peak parallelism: 4$'
has "^Would deploy $OWN to 4 of 4 workers\. Dry run: nothing was changed\.\$"
run 0 fleet deploy --dry-run --json
py '
size = int(os.environ["SIZE"])
assert d["dry_run"] is True, d
a = d["plan"]["artifact"]
assert a["size"] == size and a["sha256"] == os.environ["OWN_SHA"], a
assert [p["worker_id"] for p in d["predictions"]] == ["mock-worker-%d" % i for i in (1, 2, 3, 4)], d
for p in d["predictions"]:
    assert p["action"] == "Install" and p.get("current_version") is None and p["target_version"] == os.environ["OWN"], p
    assert abs(p["estimated_transfer_mb"] - size / 1e6) < 1e-9, p
assert abs(d["resource_requirements"]["total_transfer_mb"] - 4 * size / 1e6) < 1e-9, d["resource_requirements"]'
[[ -z $(deployments) && ! -e $RCH_STATE_DIR/history.jsonl ]] || fail "the dry run created deployments: $(deployments)"
py 'assert all(not w["current"] and not w["versions"] for w in sim().values()), sim()'
versions_are none none none none
pass

# ---------------------------------------------------------------------------
begin "Test 4: canary 25% dry run"
run 0 fleet deploy --canary 25 --canary-wait 1 --dry-run
has '^Strategy: canary 25%, wait 1s, then parallel 4$'
# One canary of 4 (max(1, floor(4*25/100))), then the other 3: at most 3 at once.
has '^  Peak parallelism: 3$'
[[ $(grep -c '^  \[INSTALL\]' <<<"$OUT") == 4 ]] || fail "expected 4 workers in the plan: $OUT"
run 0 fleet deploy --canary 25 --canary-wait 1 --dry-run --json
py '
s = d["plan"]["strategy"]
assert s["type"] == "Canary" and s["percent"] == 25 and s["wait_secs"] == 1, s
t = [p["estimated_time_secs"] for p in d["predictions"]]
assert len(set(t)) == 1, t
# 1 canary, the wait, then the remaining 3 in parallel: two worker durations plus 1 s.
assert d["estimated_duration_secs"] == 2 * t[0] + 1, (d["estimated_duration_secs"], t)
assert d["resource_requirements"]["peak_parallelism"] == 3, d["resource_requirements"]'
[[ -z $(deployments) ]] || fail "the dry run created deployments: $(deployments)"
pass

# ---------------------------------------------------------------------------
begin "Test 5: --worker mock-worker-1 plans only that worker"
run 0 fleet deploy --worker mock-worker-1 --dry-run
has '^Workers: 1$'
has "^  \[INSTALL\] +mock-worker-1 none -> $OWN "
hasnt 'mock-worker-[234]'
has "^Would deploy $OWN to 1 of 1 workers\."
run 0 fleet deploy --worker mock-worker-1 --dry-run --json
py 'assert [p["worker_id"] for p in d["predictions"]] == ["mock-worker-1"], d["predictions"]'
run 2 fleet deploy --worker mock-worker-9 --dry-run
grep -q 'mock-worker-9' <<<"$ERR" || fail "an unknown --worker is not named: $ERR"
pass

# ---------------------------------------------------------------------------
begin "Test 6: --parallel 2"
run 0 fleet deploy --parallel 2 --dry-run
has '^Strategy: all at once, parallel 2$'
has '^  Peak parallelism: 2$'
run 0 fleet deploy --parallel 2 --dry-run --json
py '
assert d["plan"]["strategy"]["parallelism"] == 2, d["plan"]["strategy"]
t = d["predictions"][0]["estimated_time_secs"]
assert d["estimated_duration_secs"] == 2 * t, d   # 4 equal workers on 2 slots
assert d["resource_requirements"]["peak_parallelism"] == 2, d'
pass

# ---------------------------------------------------------------------------
begin "Test 7: mock deployment of mock-worker-1 (--force)"
run 0 fleet deploy --worker mock-worker-1 --force --json
py '
assert d["outcome"] == "completed" and d["target_version"] == os.environ["OWN"], d
assert d["counts"] == {"completed": 1, "failed": 0, "skipped": 0, "rolled_back": 0, "aborted": 0}, d["counts"]
assert d["peak_parallelism"] == 1, d
[w] = d["workers"]
assert w["worker_id"] == "mock-worker-1" and w["status"] == "Completed" and w["error"] is None, w
assert w["current_version"] is None, w   # it had no agent before
names = [s["name"] for s in w["steps"]]
core = [n for n in names if n in ("preflight", "transfer", "install", "verify")]
assert core == ["preflight", "transfer", "install", "verify"], names
assert set(names) <= {"preflight", "transfer", "install", "toolchain", "verify"}, names
assert all(s["status"] == "completed" for s in w["steps"]), w["steps"]'
DEPLOY7=$(result_id)
[[ $DEPLOY7 =~ ^[0-9a-f-]{36}$ ]] || fail "no deployment id in the result: $OUT"
[[ -s $RCH_STATE_DIR/deployments/$DEPLOY7/result.json ]] || fail "no result.json for $DEPLOY7"
versions_are "$OWN" none none none
run 0 fleet status
has "^mock-worker-1 +testuser@localhost:22 +yes +$OWN +ready "
for w in mock-worker-2 mock-worker-3 mock-worker-4; do has "^$w +testuser@localhost:22 +yes +none "; done
pass

# ---------------------------------------------------------------------------
begin "Test 8: fleet verify"
run 0 fleet verify --worker mock-worker-1
has "^mock-worker-1 +$OWN +ok"
# The whole fleet: three workers have no agent, so verification fails and says why.
run 1 fleet verify
has "^mock-worker-1 +$OWN +ok"
for w in mock-worker-2 mock-worker-3 mock-worker-4; do has "^$w +- +FAIL +no agent installed"; done
run 1 fleet verify --json
py '
assert d["ok"] is False, d
by = {w["worker_id"]: w for w in d["workers"]}
assert by["mock-worker-1"]["ok"] is True and by["mock-worker-1"]["findings"] == [], by["mock-worker-1"]
for i in (2, 3, 4):
    w = by["mock-worker-%d" % i]
    assert w["ok"] is False and any("no agent installed" in f for f in w["findings"]), w'
pass

# ---------------------------------------------------------------------------
begin "Test 9: --resume continues an interrupted deployment"
run 1 fleet deploy --resume
grep -q -- "--resume: the newest deployment .* completed; nothing to resume" <<<"$ERR" ||
  fail "unexpected message: $ERR"
run 1 fleet deploy --resume --dry-run
grep -q -- "completed; nothing to resume" <<<"$ERR" || fail "unexpected message: $ERR"
# A pre_install hook (from a --script-dir, so only on the first run) that holds mock-worker-3
# until the process is killed. At --parallel 1: mock-worker-1 is skipped (already at the
# target), mock-worker-2 completes, mock-worker-3 hangs after its transfer; kill -9 then.
# probe_parallel = 1 keeps plan order (preflight otherwise runs wide, and a worker to
# change takes the --parallel slot in the order its preflight finished).
printf '[defaults]\nprobe_parallel = 1\n' >"$RCH_CONFIG_DIR/config.toml"
mkdir -p "$TEST_DIR/sd/hooks" "$TEST_DIR/marks"
cat >"$TEST_DIR/sd/hooks/pre_install.lua" <<'EOF'
local rch = require "rch"
return function(ctx, builtin)
  if ctx.worker.id ~= "mock-worker-3" then return builtin(ctx) end
  io.open(os.getenv("E2E_MARKS") .. "/" .. ctx.worker.id, "w"):close()
  rch.sleep(30)
  return false, "e2e hook: the test did not kill rch"
end
EOF
before=$(deployments)
E2E_MARKS="$TEST_DIR/marks" "$RCH" --script-dir "$TEST_DIR/sd" fleet deploy --parallel 1 --json \
  >"$TEST_DIR/killed.out" 2>"$TEST_DIR/killed.err" &
victim=$!
BACKGROUND+=("$victim")
for _ in $(seq 200); do [[ -e $TEST_DIR/marks/mock-worker-3 ]] && break; sleep 0.05; done
[[ -e $TEST_DIR/marks/mock-worker-3 ]] || fail "the hook never ran: $(cat "$TEST_DIR/killed.out" "$TEST_DIR/killed.err")"
set +e; { kill -9 "$victim"; wait "$victim"; rc=$?; } 2>/dev/null; set -e
BACKGROUND=()
[[ $rc == 137 ]] || fail "the deploy exited $rc before the kill: $(cat "$TEST_DIR/killed.out" "$TEST_DIR/killed.err")"
KILLED=$(comm -13 <(echo "$before") <(deployments))
[[ $KILLED =~ ^[0-9a-f-]{36}$ ]] || fail "expected one new deployment, got: '$KILLED'"
export KILLED
KDIR="$RCH_STATE_DIR/deployments/$KILLED"
[[ -s $KDIR/plan.json && ! -e $KDIR/result.json ]] || fail "the killed deployment should have a plan and no result"
cp "$KDIR/journal.jsonl" "$TEST_DIR/journal.killed"
py '
j = lines(os.environ["RCH_STATE_DIR"] + "/deployments/" + os.environ["KILLED"] + "/journal.jsonl")
final = {}
for e in j:
    if e.get("worker") and e.get("status"): final[e["worker"]] = e["status"]
assert final.get("mock-worker-1") == "Skipped" and final.get("mock-worker-2") == "Completed", final
assert final.get("mock-worker-3") not in (None, "Completed", "Skipped") and "mock-worker-4" not in final, final
s = sim()
assert s["mock-worker-2"]["current"] == os.environ["OWN"], s
assert s["mock-worker-3"]["current"] == "" and os.environ["OWN"] in s["mock-worker-3"]["versions"], s
assert not s.get("mock-worker-4", {}).get("current"), s'
versions_are "$OWN" "$OWN" none none
run 0 fleet history show "$KILLED"
has "^Deployment $KILLED: unfinished, target $OWN\$"
# The resume: no --script-dir (the hook is gone), the plan's options (--parallel 1) from disk.
run 0 fleet deploy --resume --json
py '
assert d["id"] == os.environ["KILLED"] and d["resumed"] is True and d["outcome"] == "completed", d
assert d["counts"] == {"completed": 3, "failed": 0, "skipped": 1, "rolled_back": 0, "aborted": 0}, d["counts"]
assert d["strategy"]["parallelism"] == 1, d["strategy"]
st = {w["worker_id"]: w["status"] for w in d["workers"]}
assert st == {"mock-worker-1": "Skipped", "mock-worker-2": "Completed", "mock-worker-3": "Completed",
              "mock-worker-4": "Completed"}, st
w3 = [w for w in d["workers"] if w["worker_id"] == "mock-worker-3"][0]
t = [s for s in w3["steps"] if s["name"] == "transfer"]
assert t and t[0]["output"] == "already present, sha256 matches", w3["steps"]
# Finished workers were not touched again: the journal grew only for mock-worker-3 and -4.
old = open(os.environ["TEST_DIR"] + "/journal.killed").read().splitlines()
new = open(os.environ["RCH_STATE_DIR"] + "/deployments/" + os.environ["KILLED"] + "/journal.jsonl").read().splitlines()
assert new[:len(old)] == old, "journal rewritten"
touched = {json.loads(l).get("worker") for l in new[len(old):]} - {None}
assert touched == {"mock-worker-3", "mock-worker-4"}, touched
r = json.load(open(os.environ["RCH_STATE_DIR"] + "/deployments/" + os.environ["KILLED"] + "/result.json"))
assert r["id"] == os.environ["KILLED"] and r["resumed"] is True and r["counts"]["completed"] == 3, r'
[[ $(deployments) == "$(printf '%s\n' "$before" "$KILLED" | grep -v '^$' | LC_ALL=C sort)" ]] ||
  fail "--resume created a new deployment: $(deployments)"
versions_are "$OWN" "$OWN" "$OWN" "$OWN"
run 1 fleet deploy --resume
grep -q -- "completed; nothing to resume" <<<"$ERR" || fail "unexpected message: $ERR"
rm "$RCH_CONFIG_DIR/config.toml"
pass

# ---------------------------------------------------------------------------
begin "Test 10: rollback dry run"
mkdir -p "$RCH_HOME/versions/v$NEXT"
cp "$WKR_NEXT" "$RCH_HOME/versions/v$NEXT/rch-wkr"
run 0 fleet deploy --version "$NEXT" --json
py '
assert d["outcome"] == "completed" and d["target_version"] == os.environ["NEXT"], d
assert d["counts"]["completed"] == 4, d["counts"]
assert all(w["current_version"] == os.environ["OWN"] for w in d["workers"]), d["workers"]'
DEPLOY10=$(result_id)
[[ $DEPLOY10 =~ ^[0-9a-f-]{36}$ ]] || fail "no deployment id in the result: $OUT"
versions_are "$NEXT" "$NEXT" "$NEXT" "$NEXT"
# The simulated workers as the snapshot and its journal replay (a command may fold one into the other).
sim_state() { python3 -c "$PY_PRELUDE
print(json.dumps(sim(), sort_keys=True))"; }
sim_state >"$TEST_DIR/sim.before"
cp "$RCH_STATE_DIR/history.jsonl" "$TEST_DIR/history.before"
before=$(deployments)
run 0 fleet rollback --dry-run
for w in "${WORKERS[@]}"; do has "^↺ $w would roll back $NEXT -> $OWN\$"; done
has '^Dry run: 4 would roll back, 0 failed, 0 skipped \(nothing was changed\)$'
run 0 fleet rollback --dry-run --json
py '
assert d["dry_run"] is True and d["counts"] == {"rolled_back": 4, "failed": 0, "skipped": 0}, d
for w in d["workers"]:
    assert w["status"] == "WouldRollBack" and w["from_version"] == os.environ["NEXT"], w
    assert w["to_version"] == os.environ["OWN"] and w["error"] is None, w'
sim_state | cmp -s - "$TEST_DIR/sim.before" || fail "the rollback dry run changed the simulated workers"
cmp -s "$RCH_STATE_DIR/history.jsonl" "$TEST_DIR/history.before" || fail "the rollback dry run wrote history"
[[ $(deployments) == "$before" ]] || fail "the rollback dry run created a deployment"
versions_are "$NEXT" "$NEXT" "$NEXT" "$NEXT"
pass

# ---------------------------------------------------------------------------
begin "Test 11: --audit-log"
AUDIT="$TEST_DIR/audit.jsonl"
run 0 fleet deploy --dry-run --audit-log "$AUDIT"
[[ -s $AUDIT ]] || fail "the dry run wrote no audit log"
# A canary deploy of two workers back to OWN (a downgrade), with health checks.
run 0 fleet deploy --worker mock-worker-1,mock-worker-2 --canary 50 --canary-wait 0 --verify --force \
  --audit-log "$AUDIT" --json
py 'assert d["outcome"] == "completed" and d["counts"]["completed"] == 2, d'
DEPLOY11=$(result_id)
[[ $DEPLOY11 =~ ^[0-9a-f-]{36}$ ]] || fail "no deployment id in the result: $OUT"
export DEPLOY11 AUDIT
versions_are "$OWN" "$OWN" "$NEXT" "$NEXT"
py '
import socket, subprocess
FIELDS = {"timestamp", "deployment_id", "event_type", "worker_id", "details", "user", "machine", "prev_hash", "seq"}
user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
raw = open(os.environ["AUDIT"], "rb").read()
assert raw.endswith(b"\n"), "no final newline"
prev, events = "0" * 64, []
for n, line in enumerate(raw[:-1].split(b"\n"), 1):
    e = json.loads(line)
    assert set(e) == FIELDS, (n, e)
    assert e["prev_hash"] == prev, ("hash chain broken at line", n)
    assert e["seq"] == n, ("seq", n, e["seq"])
    prev = hashlib.sha256(line).hexdigest()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", e["timestamp"]), e
    assert re.match(r"^[0-9a-f-]{36}$", e["deployment_id"]), e
    assert isinstance(e["details"], dict) and e["user"] == user and e["machine"] == socket.gethostname(), e
    events.append(e)
ids = []
for e in events:
    if e["deployment_id"] not in ids: ids.append(e["deployment_id"])
assert len(ids) == 2 and ids[1] == os.environ["DEPLOY11"], ids
dry = [e for e in events if e["deployment_id"] == ids[0]]
assert [e["event_type"] for e in dry] == ["DeploymentStarted"] + ["WorkerPreflight"] * 4 + ["DeploymentCompleted"], dry
assert sorted(e["worker_id"] for e in dry[1:5]) == ["mock-worker-%d" % i for i in (1, 2, 3, 4)], dry
assert all(e["details"].get("dry_run") is True for e in dry), dry
assert all(e["details"]["action"] == "Reinstall" or e["details"]["action"] == "Downgrade" for e in dry[1:5]), dry
dep = [e for e in events if e["deployment_id"] == ids[1]]
types = [e["event_type"] for e in dep]
assert types[0] == "DeploymentStarted" and types[-1] == "DeploymentCompleted", types
assert types.index("CanaryStarted") < types.index("CanaryPassed"), types
assert [e for e in dep if e["event_type"] == "CanaryStarted"][0]["details"]["canary_count"] == 1, dep
PIPE = ["WorkerPreflight", "WorkerTransferStarted", "WorkerTransferCompleted", "WorkerInstallStarted",
        "WorkerInstallCompleted", "WorkerVerifyStarted", "WorkerVerifyCompleted"]
for w in ("mock-worker-1", "mock-worker-2"):
    got = [e["event_type"] for e in dep if e["worker_id"] == w]
    assert got == PIPE, (w, got)
assert {e["worker_id"] for e in dep} == {None, "mock-worker-1", "mock-worker-2"}, dep
# The canary (mock-worker-1) finished before the rest started.
last1 = max(i for i, e in enumerate(dep) if e["worker_id"] == "mock-worker-1")
first2 = min(i for i, e in enumerate(dep) if e["worker_id"] == "mock-worker-2")
assert last1 < types.index("CanaryPassed") < first2, types
assert dep[-1]["details"]["success"] is True and dep[-1]["details"]["counts"]["completed"] == 2, dep[-1]
# The state audit log got the same events.
def strip(e): return (e["deployment_id"], e["event_type"], e["worker_id"], json.dumps(e["details"], sort_keys=True))
main = [strip(e) for e in lines(os.environ["RCH_STATE_DIR"] + "/audit.jsonl") if e["deployment_id"] in ids]
assert main == [strip(e) for e in events], "the state audit log differs from --audit-log"'
run 0 fleet audit verify "$AUDIT"
has "^$AUDIT: [0-9]+ entries, hash chain intact, head at entry [0-9]+ matches\$"
# The verifier can fail: alter one event's details in a copy.
sed '3s/"dry_run":true/"dry_run":false/' "$AUDIT" >"$TEST_DIR/tampered.jsonl"
! cmp -s "$AUDIT" "$TEST_DIR/tampered.jsonl" || fail "could not tamper with the copy"
run 1 fleet audit verify "$TEST_DIR/tampered.jsonl"
pass

# ---------------------------------------------------------------------------
begin "Test 12: fleet history --limit 5"
export DEPLOY7 DEPLOY10
run 0 fleet history --limit 5 --json
py '
h = d["deployments"]
E = os.environ
ids = [r["id"] for r in h]
assert ids == [E["DEPLOY11"], E["DEPLOY10"], E["KILLED"], E["DEPLOY7"]], ids
c = [(r["counts"]["completed"], r["counts"]["failed"], r["counts"]["skipped"], r["counts"]["rolled_back"]) for r in h]
assert c == [(2, 0, 0, 0), (4, 0, 0, 0), (3, 0, 1, 0), (1, 0, 0, 0)], c
assert [r["target_version"] for r in h] == [E["OWN"], E["NEXT"], E["OWN"], E["OWN"]], h
assert [r["strategy"] for r in h] == ["canary", "all_at_once", "all_at_once", "all_at_once"], h
assert all(r["outcome"] == "completed" for r in h), h
started = [r["started_at"] for r in h]
assert started == sorted(started, reverse=True), started'
run 0 fleet history --limit 2 --json
py 'assert [r["id"] for r in d["deployments"]] == [os.environ["DEPLOY11"], os.environ["DEPLOY10"]], d'
run 0 fleet history --limit 5
[[ $(grep -cE '^[0-9a-f-]{36} ' <<<"$OUT") == 4 ]] || fail "expected 4 rows: $OUT"
has "^$DEPLOY11 .* canary +completed +2/0/0/0\$"
has "^$KILLED .* all_at_once +completed +3/0/1/0\$"
pass

log "=== All Fleet E2E tests passed in $((SECONDS - STARTED))s ==="
echo "All 12 fleet E2E tests passed in $((SECONDS - STARTED))s"
