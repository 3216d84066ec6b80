#!/usr/bin/env bash
# The "Logging Requirements" of shared/spec/fleet.md, each at its level, in
# the --log-file of a real canary deploy against the sshd testbed (w1 a
# draining canary, a site preflight warning on w2, w4's sshd down) and of
# its dry run. (update.md's items: tests/e2e/update_test.sh.)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

mkdir -p "$TMP/sd/hooks"
cat >"$TMP/sd/hooks/preflight.lua" <<'EOF_LUA'
-- Test hook: the built-in checks plus a site warning on w2.
return function(ctx, builtin)
  local issues = builtin(ctx)
  if ctx.worker.id == "w2" then
    issues[#issues + 1] = { severity = "warning", check = "site_check", message = "test warning",
      remediation = "nothing to do, this is a test" }
  end
  return issues
end
EOF_LUA
stage "$NEXT" "$RCH_WKR_NEXT"
deploy 0
expect_exit 0 "$RCH" fleet drain --worker w1 --timeout 5
"${TESTBED[@]}" stop 4 "$TB" >/dev/null

# has LEVEL TEXT: the log file has a line at LEVEL containing TEXT (fixed string).
# (grep -c, not -q: -q would stop reading early and, under pipefail, fail the first grep.)
has() {
  (($(grep -F "$2" "$LOG" | grep -cE "^\[[0-9T:.-]+ $1\] ") > 0)) || fail "no $1 line with '$2' in $LOG:
$(cat "$LOG")"
}

LOG=$TMP/dry.log
expect_exit 0 "$RCH" --script-dir "$TMP/sd" fleet deploy --no-toolchain --dry-run --version "$NEXT" \
  --worker 'w[1-3]' --log-file "$LOG" -v
has debug "dry run: worker w1: Upgrade, current $OWN, transfer "

LOG=$TMP/deploy.log
expect_exit 1 "$RCH" --script-dir "$TMP/sd" fleet deploy --no-toolchain --version "$NEXT" --canary 50 \
  --canary-wait 0 --log-file "$LOG" -v
ID=$(ls -t "$RCH_STATE_DIR/deployments" | head -n 1)
has info "deployment $ID started: version $NEXT, 4 workers, strategy canary 50%"
for step in preflight transfer install verify; do has info "worker w1: $step"; done
has info "canary: 2 of 4 workers first"
has info "canary healthy, deploying to the remaining 2 workers"
grep -qE "^\[[0-9T:.-]+ info\] worker w1: completed in [0-9]+\.[0-9]{2} s$" "$LOG" || fail "no completion with duration"
has info "deployment $ID failed: 3 completed, 1 failed, 0 skipped, 0 rolled back, 0 aborted in "
has info "audit event WorkerInstallCompleted (worker w1) written to $RCH_STATE_DIR/audit.jsonl"
has warning "worker w2: site_check: test warning (nothing to do, this is a test)"
has warning "canary w1 is healthy but draining: it runs no builds"
has error "worker w4 failed at preflight: cannot connect to "
has debug " -> exit 0, stdout "
grep -qE "^\[[0-9T:.-]+ debug\] .*sent [0-9]+ bytes \([0-9.]+ MB/s, limit [0-9]+ s\)" "$LOG" || fail "no transfer bytes and speed"
# Piped, at the default level, the console says each failure once (the log file has its record).
[[ $(grep -c "w4" <<<"$ERR") == 0 ]] || fail "the log went to stderr too: $ERR"
[[ $(grep -c "cannot connect to" <<<"$OUT") == 1 ]] || fail "w4's failure not shown exactly once: $OUT"
"${TESTBED[@]}" start 4 "$TB" >/dev/null
echo "PASS"
