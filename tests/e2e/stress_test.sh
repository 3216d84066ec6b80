#!/usr/bin/env bash
# rch fleet stress: every strategy at a small scale with injected faults passes
# its invariants (checked from --json, with the counts the faults imply); and
# stress really fails (exit 1, verdict fail, the right invariant named) when
# a strategy or the fleet breaks one: more workers in flight than --parallel
# (slots widened; three d:deploy at once or the pipeline run around it must
# still hold the cap), a rollback that leaves the target installed,
# a Started audit event never closed, workers claimed Completed but never deployed.
# The breakage comes from strategy overrides in a --script-dir; nothing in rch changes.
source "$(dirname "$0")/lib.sh"

export RCH_CONFIG_DIR=$TMP/cfg RCH_STATE_DIR=$TMP/state RCH_DATA_DIR=$TMP/data RCH_HOME=$TMP/home \
  RCH_CACHE_DIR=$TMP/cache NO_COLOR=1
mkdir -p "$RCH_CONFIG_DIR" "$RCH_STATE_DIR" "$RCH_DATA_DIR" "$RCH_HOME" "$RCH_CACHE_DIR"
unset RCH_LOG_LEVEL RCH_MOCK_SSH RCH_SIM_LATENCY_MS RCH_SIM_BANDWIDTH_MBPS RCH_SIM_FAULT_RATE RCH_SIM_SEED RCH_SIM_FAULTS

INVARIANTS='["peak in-flight <= --parallel", "every worker in exactly one terminal state",
  "failed workers are back on their previous version", "every Started audit event completed or failed",
  "journal replays to the final states; --resume leaves finished workers alone"]'
# report 'PYTHON': runs PYTHON with r = the --json report in $OUT and inv = invariant name -> ok.
report() {
  python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
names = [c['name'] for c in r['invariants']]
assert names == $INVARIANTS, names
inv = {c['name']: c['ok'] for c in r['invariants']}
detail = {c['name']: c['detail'] for c in r['invariants']}
$1" <<<"$OUT" || fail "stress report check failed:$1
--- stdout: $OUT
--- stderr: $ERR"
}

# ---- Every strategy, two seeds: 2000 workers, 5% of them faulty, parallel 64.
# (Latency 2 ms per simulated command instead of 5: the same code paths, less waiting.)
N=2000 P=64
for strategy in all canary rolling; do
  for seed in 1 2; do
    expect_exit 0 "$RCH" fleet stress --workers $N --parallel $P --strategy $strategy --fault-rate 0.05 \
      --latency-ms 2 --seed $seed --json
    report "
n, p = $N, $P
assert r['verdict'] == 'pass' and all(inv.values()), r
assert r['workers'] == n and r['parallel'] == p and r['strategy'] == '$strategy' and r['seed'] == $seed, r
c = r['counts']
assert c['completed'] + c['failed'] + c['skipped'] + c['rolled_back'] == n, c
f = r['faults_injected']
assert 0.02 * n < f < 0.08 * n, f
# The cap was reached (so the check is not vacuous) and never exceeded.
assert r['peak_in_flight'] == p, r['peak_in_flight']
assert detail['peak in-flight <= --parallel'] == 'peak %d, cap %d; journal peak %d' % (p, p, p), detail
if '$strategy' == 'canary':
    # 10% canaries (200): with 5% faulty workers some canary fails, the canaries are rolled
    # back (or failed) and the other 1800 are never touched.
    assert c['completed'] == 0 and c['skipped'] == n - 200 and c['failed'] + c['rolled_back'] == 200, c
else:
    # Every faulty worker fails (connect, a step, a dropped transfer, unhealthy under --verify); no other does.
    assert c['completed'] == n - f and c['failed'] + c['rolled_back'] == f and c['skipped'] == 0, (c, f)
    assert c['rolled_back'] > 0 and c['failed'] > 0, c
assert r['workers_per_second'] > 0 and r['peak_rss_mb'] > 0, r"
    # A passing run cleans up after itself.
    state_dir=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["state_dir"])' <<<"$OUT")
    [[ ! -e $state_dir ]] || fail "a passing stress run left $state_dir behind"
  done
done

# ---- Broken invariants: stress must fail and name the broken one (and only it).
mkdir -p "$TMP"/{parallel,bypass,widened,rollback,audit,fake}/strategies
# d:deploy from three tasks at once: the --parallel slots are the deployment's, so still 16.
cat >"$TMP/parallel/strategies/all_at_once.lua" <<'EOF'
local rch = require "rch"
return { name = "all_at_once", describe = function() return "three d:deploy at once" end, run = function(d)
  local parts = { {}, {}, {} }
  for i, ws in ipairs(d.workers) do table.insert(parts[i % 3 + 1], ws) end
  rch.parallel(parts, 3, function(part) d:deploy(part) end)
end }
EOF
# The pipeline run directly, around d:deploy, 3 x --parallel at once: its slots still hold
# (the resume check still fails on it).
cat >"$TMP/bypass/strategies/all_at_once.lua" <<'EOF'
local rch = require "rch"
local pipeline = require "rch.deploy.pipeline"
return { name = "all_at_once", describe = function() return "pipeline around d:deploy" end, run = function(d)
  rch.parallel(d.workers, 3 * d.options.parallel, function(ws) pipeline.run(d, ws) end)
end }
EOF
# The slots widened to 3 x --parallel: 48 workers changing at once.
cat >"$TMP/widened/strategies/all_at_once.lua" <<'EOF'
local rch = require "rch"
return { name = "all_at_once", describe = function() return "slots widened" end, run = function(d)
  d.slots = rch.semaphore(3 * d.options.parallel)
  d:deploy(d.workers)
end }
EOF
# A rollback undone: workers reported RolledBack get the target installed again.
cat >"$TMP/rollback/strategies/all_at_once.lua" <<'EOF'
return { name = "all_at_once", describe = function() return "rollback undone" end, run = function(d)
  d:deploy(d.workers)
  for _, ws in ipairs(d.workers) do
    if ws.status == "RolledBack" then assert(ws.conn:install(ws.root, d.target_version, { sha256 = d.artifact.sha256 }, d.id)) end
  end
end }
EOF
# An install that "started" in the audit log and never ended.
cat >"$TMP/audit/strategies/all_at_once.lua" <<'EOF'
return { name = "all_at_once", describe = function() return "unclosed audit event" end, run = function(d)
  d:deploy(d.workers)
  d.audit:log("WorkerInstallStarted", d.workers[7].id, { version = d.target_version })
end }
EOF
# Workers claimed Completed without being deployed.
cat >"$TMP/fake/strategies/all_at_once.lua" <<'EOF'
return { name = "all_at_once", describe = function() return "fake completion" end, run = function(d)
  local first = {}
  for i = 1, 10 do first[i] = d.workers[i] end
  d:deploy(first)
  for _, ws in ipairs(d.workers) do if ws.status == "Pending" then ws.status = "Completed" end end
end }
EOF
# The human report says so too, and keeps the state for a post-mortem.
expect_exit 0 "$RCH" --script-dir "$TMP/parallel" fleet stress --workers 300 --parallel 16
contains "$OUT" "[ok] peak in-flight <= --parallel  (peak 16, cap 16; journal peak 16)"
expect_exit 1 "$RCH" --script-dir "$TMP/widened" fleet stress --workers 300 --parallel 16
contains "$OUT" "[FAIL] peak in-flight <= --parallel  (peak 48, cap 16; journal peak 48)"
contains "$OUT" "verdict: FAIL (state kept in $RCH_STATE_DIR/stress/"
# broken NAME WANT_FAILED_JSON [ENV…]: stress with the NAME strategy exits 1 with exactly these invariants failed.
broken() {
  local name=$1 want=$2; shift 2
  expect_exit 1 env "$@" "$RCH" --script-dir "$TMP/$name" fleet stress --workers 300 --parallel 16 --json
  report "
assert r['verdict'] == 'fail', r
failed = sorted(k for k, ok in inv.items() if not ok)
assert failed == sorted($want), ('$name', failed, detail)"
}
broken widened '["peak in-flight <= --parallel"]'
report "assert detail['peak in-flight <= --parallel'] == 'peak 48, cap 16; journal peak 48', detail"
# Around d:deploy the cap still holds; the resume check fails there, as it always did.
broken bypass '["journal replays to the final states; --resume leaves finished workers alone"]'
report "assert detail['peak in-flight <= --parallel'] == 'peak 16, cap 16; journal peak 16', detail"
# One worker fails at verify (after install), the other at health: neither can be probed
# or trusted through the transport, but the check sees what they really run.
broken rollback '["failed workers are back on their previous version"]' \
  RCH_SIM_FAULTS=sim-000005:fail_at=verify
report "assert 'sim-000005 RolledBack but its current is' in detail['failed workers are back on their previous version'], detail"
broken rollback '["failed workers are back on their previous version"]' RCH_SIM_FAULTS=sim-000005:unhealthy
broken audit '["every Started audit event completed or failed"]'
report "assert 'sim-000007' in detail['every Started audit event completed or failed'], detail"
broken fake '["failed workers are back on their previous version",
  "journal replays to the final states; --resume leaves finished workers alone"]'
# The same strategies without the breakage they need (no fault to undo) pass.
expect_exit 0 "$RCH" --script-dir "$TMP/rollback" fleet stress --workers 300 --parallel 16 --json
report "assert r['verdict'] == 'pass', r"
echo "stress: ok"
