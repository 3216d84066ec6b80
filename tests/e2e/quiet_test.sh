#!/usr/bin/env bash
# --quiet against the real sshd testbed: every command that touches workers
# prints only its closing summary (the workers of each outcome, folded, and
# the command that retries what failed); the reasons go to stderr; --json
# output is the same with and without it; --help describes it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

expect_exit 0 "$RCH" --help
contains "$OUT" "-q,--quiet"
contains "$OUT" "only their closing summary"

# stdout_is WANT…: $OUT is exactly these lines (regexes, anchored).
stdout_is() {
  local -a got
  mapfile -t got <<<"$OUT"
  ((${#got[@]} == $#)) || fail "stdout has ${#got[@]} lines, want $#: $OUT | stderr: $ERR"
  local i=0 want
  for want in "$@"; do
    [[ ${got[i]} =~ ^$want$ ]] || fail "stdout line $((i + 1)) is '${got[i]}', want /$want/ in: $OUT"
    i=$((i + 1))
  done
}

# ---- A deploy with a failure (w3 down): the summary, the retry line, nothing else;
# the failure once, on stderr. The flag goes before or after the subcommand.
"${TESTBED[@]}" stop 3 "$TB" >/dev/null
expect_exit 1 "$RCH" fleet deploy --no-toolchain --quiet
stdout_is "Deployment [0-9a-f-]{36} failed: 3 completed, 1 failed, 0 skipped, 0 rolled back in [0-9.]+s" \
  "  completed   w\[1-2,4\]" "  failed      w3" \
  "Retry the workers that did not complete: rch fleet deploy --resume"
# (the connect retries before it are warnings of their own)
[[ $(grep -v "; retry [0-9]* of [0-9]* in " <<<"$ERR" | grep -c "w3") == 1 ]] || fail "stderr should name w3's failure once: $ERR"
contains "$ERR" "rch: w3 failed: preflight: cannot connect"
installed 1 "$OWN" "$OWN_SHA"

# --json: the same document with and without --quiet.
expect_exit 1 "$RCH" -q fleet deploy --no-toolchain --json --force --worker w3
quiet_json=$OUT
expect_exit 1 "$RCH" fleet deploy --no-toolchain --json --force --worker w3
OUT=$(python3 -c '
import json, sys
strip = lambda d: {k: v for k, v in d.items() if k not in ("id", "created_at", "completed_at", "duration_secs", "workers")}
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(strip(a) == strip(b) and [w["error"] for w in a["workers"]] == [w["error"] for w in b["workers"]])' \
  "$quiet_json" "$OUT")
[[ $OUT == True ]] || fail "--quiet changed the --json document: $quiet_json"

# ---- status, verify, drain, undrain, rollback: only their summaries.
expect_exit 0 "$RCH" --quiet fleet status
stdout_is "  reachable   w\[1-2,4\]" "  unreachable w3" "Retry the unreachable workers: rch fleet status --worker 'w3'"
contains "$ERR" "rch: w3: cannot connect"

expect_exit 1 "$RCH" fleet verify --quiet
stdout_is "verification found problems" "  ok          w\[1-2,4\]" "  problems    w3" \
  "Retry the check of the workers with problems: rch fleet verify --worker 'w3'"
contains "$ERR" "rch: w3: "

expect_exit 1 "$RCH" fleet drain --quiet --timeout 5
stdout_is "  drained     w\[1-2,4\]" "  failed      w3" "Retry the workers not drained: rch fleet drain --worker 'w3'"
contains "$ERR" "w3"
expect_exit 1 "$RCH" fleet undrain --quiet
stdout_is "  undrained   w\[1-2,4\]" "  failed      w3" "Retry the workers not undrained: rch fleet undrain --worker 'w3'"

# Without --quiet the same commands print their per-worker lines, then the same summary.
expect_exit 1 "$RCH" fleet undrain
contains "$OUT" "✓ w1 accepts builds again"
contains "$OUT" "  undrained   w[1-2,4]"

# w1 and w2 get a second version so that they have one to roll back to.
stage "$NEXT" "$RCH_WKR_NEXT"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --quiet --version "$NEXT" --worker w1,w2
stdout_is "Deployment [0-9a-f-]{36} completed: 2 completed, 0 failed, 0 skipped, 0 rolled back in [0-9.]+s" \
  "  completed   w\[1-2\]"
expect_exit 1 "$RCH" fleet rollback --quiet
stdout_is "Rollback: 2 rolled back, 2 failed, 0 skipped" "  rolled back w\[1-2\]" "  failed      w\[3-4\]" \
  "Retry the workers that failed: rch fleet rollback --worker 'w\[3-4\]'"
contains "$ERR" "rch: w3 failed: "
contains "$ERR" "rch: w4 failed: no version older than $OWN on w4"
installed 1 "$OWN" "$OWN_SHA"
echo "PASS"
