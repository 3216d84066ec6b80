#!/usr/bin/env bash
# Timeouts that hold, against the real sshd testbed: a worker whose sshd is
# SIGSTOPped mid-transfer fails within [defaults] stall_timeout and the deploy
# ends (fleet.lock released) promptly; a remote command that times out leaves
# no process behind on the worker.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

# w2's sshd listener and everything under it (per-connection sshd, commands).
w2_tree() {
  local pid
  pid=$(<"$TB/w2/sshd.pid")
  echo "$pid"
  ps -e -o pid=,ppid= | awk -v root="$pid" '
    { kids[$2] = kids[$2] " " $1 }
    END { q[1] = root; n = 1; for (i = 1; i <= n; i++) { m = split(kids[q[i]], c, " ");
      for (j = 1; j <= m; j++) { print c[j]; q[++n] = c[j] } } }'
}
STOPPED=()
timeouts_cleanup() {
  ((${#STOPPED[@]} == 0)) || kill -CONT "${STOPPED[@]}" 2>/dev/null || true
  deploy_cleanup
}
trap timeouts_cleanup EXIT

# ---- w2's sshd stopped mid-transfer: the transfer fails as stalled within
# stall_timeout (the size-derived limit alone would allow ~30 min), the deploy
# ends and fleet.lock is free.
big=$TMP/big-rch-wkr
cp "$RCH_WKR" "$big"
head -c 200000000 /dev/zero >>"$big" # an ELF runs with data appended; 200 MB takes a while to stream
stage "$OWN" "$big"
# Sent as it is ([deploy] compress = never): zeros would compress to almost nothing.
write_config $'command_timeout = 20\nstall_timeout = 3\n[deploy]\ncompress = "never"\n'
"$RCH" fleet deploy --no-toolchain --json --worker w2 >"$TMP/out" 2>"$TMP/err" &
dep_pid=$!
BACKGROUND+=("$dep_pid")
# Stop the whole tree once the upload has started writing on the worker.
for ((i = 0; i < 1200; i++)); do
  part=$(find "$(root_of 2)/versions" -name '.rch-wkr.part.*' -size +1k 2>/dev/null | head -n 1 || true)
  [[ -n $part ]] && break
  sleep 0.01
done
[[ -n $part ]] || fail "the upload to w2 never started: $(cat "$TMP/err")"
mapfile -t STOPPED < <(w2_tree)
kill -STOP "${STOPPED[@]}"
stopped_at=$SECONDS
for ((i = 0; i < 600; i++)); do
  kill -0 "$dep_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$dep_pid" 2>/dev/null; then
  fail "the deploy still runs 60 s after w2's sshd was stopped (hung on the transfer)"
fi
wall=$((SECONDS - stopped_at))
set +e; wait "$dep_pid"; rc=$?; set -e
echo "deploy ended ${wall} s after w2 was stopped (exit $rc)"
((wall < 20)) || fail "the deploy took $wall s after w2 was stopped; stall_timeout is 3 s"
[[ $rc == 1 ]] || fail "deploy exit $rc, want 1: $(cat "$TMP/err")"
OUT=$(cat "$TMP/out"); ERR=$(cat "$TMP/err")
json '
w = st["w2"]
assert w["status"] == "Failed", w
assert w["error"] == "transfer: transfer stalled: no progress for 3 s", w["error"]'
# fleet.lock is free: another deploy (dry run takes the same lock) runs at once.
expect_exit 0 timeout 10 flock -n "$RCH_DATA_DIR/fleet.lock" true
kill -CONT "${STOPPED[@]}" 2>/dev/null || true
STOPPED=()
"${TESTBED[@]}" stop 2 "$TB" >/dev/null
reset_workers
write_config
stage "$OWN" "$RCH_WKR"

# ---- Remote commands rch gives up on leave nothing running on the worker:
# one that times out and ignores SIGTERM (as a tool draining gracefully
# might), and one whose rch is killed. Their sleeps have lengths no other test uses.
mkdir -p "$TMP/sd/hooks"
cat >"$TMP/sd/hooks/pre_install.lua" <<'EOF'
-- Test hook: w1 runs a command that outlives its 2 s timeout and ignores
-- SIGTERM; w3 runs one for 318 s (the test kills rch meanwhile).
return function(ctx)
  if ctx.worker.id == "w1" then
    local r = ctx.exec({ "sh", "-c", "trap '' TERM; sleep 317; echo done" }, { timeout = 2 })
    if r.timed_out then return false, "test hook: timed out" end
  else
    ctx.exec({ "sh", "-c", "sleep 318; echo done" }, { timeout = 600 })
  end
  return true
end
EOF
count() { pgrep -c -f "^sleep $1\$" || true; }
# gone N: waits up to 5 s (SIGTERM, SIGKILL 2 s later) for every `sleep N` to end.
gone() {
  local i
  for ((i = 0; i < 50; i++)); do
    [[ $(count "$1") == 0 ]] && return 0
    sleep 0.1
  done
  fail "rch gave up on a remote command, yet it still runs on the worker: $(pgrep -a -f "sleep $1")"
}
[[ $(count 317) == 0 && $(count 318) == 0 ]] || fail "a sleep 317/318 is already running: $(pgrep -a -f 'sleep 31[78]')"
GLOBAL=(--script-dir "$TMP/sd")
deploy 1 --worker w1
GLOBAL=()
json '
assert st["w1"]["status"] == "Failed" and "test hook: timed out" in st["w1"]["error"], st["w1"]'
gone 317
"$RCH" --script-dir "$TMP/sd" fleet deploy --no-toolchain --json --worker w3 >"$TMP/out" 2>"$TMP/err" &
dep_pid=$!
BACKGROUND+=("$dep_pid")
for ((i = 0; i < 200; i++)); do
  [[ $(count 318) == 1 ]] && break
  sleep 0.05
done
[[ $(count 318) == 1 ]] || fail "the w3 hook command never started: $(cat "$TMP/err")"
kill -9 "$dep_pid"
gone 318

echo "deploy timeouts: ok"
