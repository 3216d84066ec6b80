#!/usr/bin/env bash
# Logs you can debug with, against the real sshd testbed: -v (debug) names the
# endpoint each worker connected to (with key exchange, cipher, how its host key
# and the login were trusted) and every remote command with its exit
# code and duration, and the bytes and MB/s of a transfer; -vv (trace) adds
# the commands' output; --log-file takes the lines off stderr; with --json
# stdout stays one document; an unknown RCH_LOG_LEVEL is a usage error.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

RCH_LOG_LEVEL=bogus expect_exit 2 "$RCH" fleet status
contains "$ERR" "RCH_LOG_LEVEL=bogus is not a log level (trace, debug, info, warn, error, off)"

port=$(<"$TB/w1/port")
expect_exit 0 "$RCH" fleet deploy --no-toolchain --json --worker w1 -v
python3 -c 'import json, sys; json.loads(sys.argv[1])' "$OUT" || fail "stdout is not one JSON document: $OUT"
contains "$ERR" "connected to rchtest@127.0.0.1:$port (host 127.0.0.1, identity $TB/client/id_ed25519"
# The key exchange and cipher negotiated, and how the host and the login were trusted (no jump here:
# tests/e2e/ssh_jump_test.sh checks "via jump").
grep -qE "connected to rchtest@127\.0\.0\.1:$port \(.*; kex curve25519-sha256[a-z@.]*, cipher aes128-gcm@openssh\.com, host key: known_hosts $CFG/known_hosts:1, login: identity file $TB/client/id_ed25519\)" <<<"$ERR" ||
  fail "the connection line lacks kex, cipher, host key or login: $ERR"
[[ $ERR != *"via jump"* ]] || fail "a direct connection claims a jump host: $ERR"
grep -qE "rchtest@127\.0\.0\.1:$port: .* -> exit 0, stdout [0-9]+ B, stderr [0-9]+ B in [0-9.]+ s; sent [0-9]+ bytes \([0-9.]+ MB/s, limit [0-9]+ s\)" <<<"$ERR" ||
  fail "no transfer line with bytes and MB/s: $ERR"
[[ $(grep -c " -> exit 0, " <<<"$ERR") -ge 4 ]] || fail "expected every remote command in the debug log: $ERR"
[[ $ERR != *" stdout: "* ]] || fail "command output at debug level: $ERR"

expect_exit 0 "$RCH" fleet status --worker w1 -vv
contains "$ERR" "rchtest@127.0.0.1:$port stdout: "

expect_exit 0 "$RCH" fleet status --worker w1 -v --log-file "$TMP/rch.log"
[[ -z $ERR ]] || fail "--log-file: the log still went to stderr: $ERR"
grep -q "connected to rchtest@127.0.0.1:$port" "$TMP/rch.log" || fail "no log lines in the file: $(cat "$TMP/rch.log")"
: >"$TMP/afile"
expect_exit 2 "$RCH" fleet status --log-file "$TMP/afile/rch.log"
contains "$ERR" "--log-file $TMP/afile/rch.log"
echo "PASS"
