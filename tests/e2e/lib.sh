# Shared helpers for the shell tests: every check fails the test with a message.
set -euo pipefail
: "${RCH:?RCH must point at the rch binary}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_exit CODE CMD…: runs CMD, captures stdout/stderr in $OUT/$ERR, checks the exit code.
expect_exit() {
  local want=$1; shift
  set +e
  "$@" >"$TMP/out" 2>"$TMP/err"
  local got=$?
  set -e
  OUT=$(cat "$TMP/out"); ERR=$(cat "$TMP/err")
  [[ $got == "$want" ]] || fail "exit $got (want $want) from: $* | stdout: $OUT | stderr: $ERR"
}
contains() { [[ $1 == *"$2"* ]] || fail "expected '$2' in: $1"; }
# wait_until SECONDS CMD…: polls CMD every 50 ms.
wait_until() {
  local limit=$1 i
  shift
  for ((i = 0; i < limit * 20; i++)); do
    "$@" && return 0
    sleep 0.05
  done
  fail "timed out after ${limit}s waiting for: $*"
}
# Testbed helpers (tests that talk to workers share the fixture's testbed).
TB=${RCH_TESTBED_DIR:-}
# reset_workers: every testbed worker back to an empty root (nothing left in it) and no command
# shimmed (its shim dir empty), sshd running.
reset_workers() {
  local d
  for d in "$TB"/w*/; do
    chmod 755 "$d/root"
    find "$d/root" -mindepth 1 -delete
    if [[ -d $d/shim ]]; then find "$d/shim" -mindepth 1 -delete; fi
  done
  local k
  for k in $(seq 1 "$(ls -d "$TB"/w*/ | wc -l)"); do
    bash "$RCH_SOURCE_DIR/scripts/testbed.sh" start "$k" "$TB" >/dev/null 2>&1 || true
  done
}
