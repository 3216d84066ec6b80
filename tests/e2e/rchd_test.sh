#!/usr/bin/env bash
# E2E tests of the local daemon binary ($RCHD): version/help, a daemonized
# start that returns only once the socket answers, the status JSON, a second
# daemon refused, drain with a real build, startup errors reported by the
# starting process, SIGTERM and kill -9 recovery. Talks to the socket with a
# tiny python3 client. Every check fails the test when it fails.
set -euo pipefail

: "${RCHD:?set RCHD to the rchd binary under test}"

# Short paths: a Unix socket path must fit in 108 bytes.
work=$(mktemp -d /tmp/rchd-e2e-XXXXXX)
root="$work/root"
sock="$root/rchd.sock"
pidfile="$root/rchd.pid"
daemons=()
cleanup() {
  local p
  for p in "${daemons[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  [[ -f $root/rchd.log ]] && sed 's/^/  log: /' "$root/rchd.log" >&2
  exit 1
}

# shellcheck source=tests/e2e/rchd_lib.sh
source "$(dirname "$0")/rchd_lib.sh"
rq() { rchd_request "$@"; }

# field JSON KEY: the value of KEY, JSON-encoded (true, 12, "text").
expect_field() {
  local got
  got=$(field "$1" "$2") || fail "no field $2 in: $1"
  [[ $got == "$3" ]] || fail "$2 is $got, want $3, in: $1"
}

# Waits up to 5 s until pid $1 has exited.
wait_gone() {
  local i
  for i in $(seq 100); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.05
  done
  fail "pid $1 still running"
}

echo "--- --version, --help, usage errors"
out=$("$RCHD" --version)
[[ $out =~ ^rchd\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "--version printed '$out'"
version=${out#rchd }
"$RCHD" --help | grep -q '{"cmd":"drain","timeout":S}' || fail "--help does not describe the protocol"
rc=0; "$RCHD" frobnicate 2>"$work/err" || rc=$?
[[ $rc == 2 ]] || fail "unknown command exited $rc, want 2"
grep -q "unknown command 'frobnicate'" "$work/err" || fail "unknown command not named: $(cat "$work/err")"
rc=0; "$RCHD" run --bogus 2>"$work/err" || rc=$?
[[ $rc == 2 ]] || fail "unknown run flag exited $rc, want 2"

echo "--- daemonized start returns once the socket answers"
"$RCHD" run --root "$root" || fail "rchd run exited $?"
# No sleep, no retry: the first request must already be answered.
status=$(rq "$sock" '{"cmd":"status"}') || fail "socket not answering right after rchd run returned"
[[ -f $pidfile ]] || fail "no pidfile at $pidfile"
pid=$(cat "$pidfile")
daemons+=("$pid")
[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" || fail "pidfile holds '$pid', not a live pid"
[[ $(stat -c %a "$sock") == 600 ]] || fail "socket mode is $(stat -c %a "$sock"), want 600"
# Detached: its own session, and no longer our child.
[[ $(ps -o sid= -p "$pid" | tr -d ' ') == "$pid" ]] && fail "daemon $pid is a session leader (no double fork)"
[[ $(ps -o sid= -p "$pid" | tr -d ' ') != $(ps -o sid= -p $$ | tr -d ' ') ]] || fail "daemon shares our session"
grep -q "listening on $sock" "$root/rchd.log" || fail "no startup line in $root/rchd.log"

echo "--- status JSON"
expect_field "$status" ok true
expect_field "$status" pid "$pid"
expect_field "$status" version "\"$version\""
expect_field "$status" draining false
expect_field "$status" active_builds 0
expect_field "$status" root "\"$root\""

echo "--- a second daemon on the same root is refused, naming the first"
rc=0; "$RCHD" run --root "$root" 2>"$work/err" || rc=$?
[[ $rc == 1 ]] || fail "second rchd exited $rc, want 1"
grep -q "another rchd (pid $pid)" "$work/err" || fail "second rchd error does not name pid $pid: $(cat "$work/err")"
rc=0; "$RCHD" run --root "$root" --foreground 2>"$work/err" || rc=$?
[[ $rc == 1 ]] || fail "second rchd (foreground) exited $rc, want 1"
grep -q "another rchd (pid $pid)" "$work/err" || fail "foreground refusal does not name pid $pid"
[[ $(cat "$pidfile") == "$pid" ]] || fail "the refused start rewrote the pidfile"

echo "--- drain waits for a real build; builds refused while draining"
# The build runs until the test creates "release" in its cwd, so it is
# certainly still active while drain and shutdown are checked.
reply=$(rq "$sock" '{"cmd":"build","argv":["sh","-c","while [ ! -e release ]; do sleep 0.05; done; echo done > build.out"],"cwd":"'"$work"'"}')
expect_field "$reply" ok true
expect_field "$(rq "$sock" '{"cmd":"status"}')" active_builds 1
reply=$(rq "$sock" '{"cmd":"drain","timeout":30}')
expect_field "$reply" draining true
expect_field "$reply" active_builds 1
reply=$(rq "$sock" '{"cmd":"build","argv":["true"]}')
expect_field "$reply" ok false
expect_field "$reply" error '"draining"'
reply=$(rq "$sock" '{"cmd":"shutdown"}')
expect_field "$reply" ok false
[[ $(field "$reply" error) == *"builds active"* ]] || fail "shutdown refusal says: $reply"
expect_field "$(rq "$sock" '{"cmd":"status"}')" active_builds 1
touch "$work/release"
drained=""
for i in $(seq 100); do
  [[ $(field "$(rq "$sock" '{"cmd":"status"}')" active_builds) == 0 ]] && { drained=yes; break; }
  sleep 0.05
done
[[ -n $drained ]] || fail "build still active after 5 s"
[[ $(cat "$work/build.out" 2>/dev/null) == done ]] || fail "the build did not run in its cwd"
expect_field "$(rq "$sock" '{"cmd":"undrain"}')" draining false
expect_field "$(rq "$sock" '{"cmd":"build","argv":["true"]}')" ok true

echo "--- bad requests get error replies and the daemon carries on"
reply=$(rq "$sock" 'not json')
expect_field "$reply" ok false
reply=$(rq "$sock" '{"cmd":"nope"}')
expect_field "$reply" ok false
[[ $(field "$reply" error) == *nope* ]] || fail "unknown cmd not named: $reply"
expect_field "$(rq "$sock" '{"cmd":"status"}')" pid "$pid"

echo "--- SIGTERM: clean exit, socket and pidfile removed"
kill -TERM "$pid"
wait_gone "$pid"
[[ ! -e $sock ]] || fail "socket $sock left behind"
[[ ! -e $pidfile ]] || fail "pidfile $pidfile left behind"
grep -q "received SIGTERM" "$root/rchd.log" || fail "SIGTERM not logged"
grep -q "exited cleanly" "$root/rchd.log" || fail "no clean exit logged"
rc=0; rq "$sock" '{"cmd":"status"}' >/dev/null 2>&1 || rc=$?
[[ $rc != 0 ]] || fail "something still answers on $sock"

echo "--- after kill -9, the next start takes over the stale socket and pidfile"
"$RCHD" run --root "$root" || fail "restart exited $?"
pid=$(cat "$pidfile"); daemons+=("$pid")
kill -9 "$pid"
wait_gone "$pid"
[[ -S $sock && -f $pidfile ]] || fail "kill -9 should leave socket and pidfile behind"
"$RCHD" run --root "$root" 2>"$work/err" || fail "start over stale files failed: $(cat "$work/err")"
new_pid=$(cat "$pidfile"); daemons+=("$new_pid")
[[ $new_pid != "$pid" ]] || fail "pidfile still names the dead pid"
expect_field "$(rq "$sock" '{"cmd":"status"}')" pid "$new_pid"
grep -q "of pid $pid, which is no longer running" "$root/rchd.log" || fail "stale pidfile takeover not logged"
expect_field "$(rq "$sock" '{"cmd":"shutdown"}')" ok true
wait_gone "$new_pid"
[[ ! -e $sock && ! -e $pidfile ]] || fail "shutdown left socket or pidfile behind"

echo "--- startup errors reach the starting process"
touch "$work/not-a-socket"
rc=0; "$RCHD" run --root "$root" --socket "$work/not-a-socket" 2>"$work/err" || rc=$?
[[ $rc == 1 ]] || fail "start on a regular file exited $rc, want 1"
grep -q "is not a socket" "$work/err" || fail "error not reported to the caller: $(cat "$work/err")"
[[ ! -e $pidfile ]] || fail "failed start left a pidfile"
long="$work/$(printf 'x%.0s' $(seq 120))"
rc=0; "$RCHD" run --root "$root" --socket "$long.sock" 2>"$work/err" || rc=$?
[[ $rc == 1 ]] || fail "start with a too long socket path exited $rc, want 1"
grep -q "longer than" "$work/err" || fail "too long socket path not explained: $(cat "$work/err")"

echo "PASS: rchd"
