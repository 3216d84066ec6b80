#!/usr/bin/env bash
# Connect retries against the real sshd testbed: a canary whose sshd comes up
# 1.5 s after the deploy starts is reached by a retry (logged at warn with the
# reason and attempt) and the rollout completes; an authentication failure is
# never retried (one connection in sshd's log); connect_retries = 0 gives up
# at the first refusal.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

port1=$(<"$TB/w1/port")
stage "$NEXT" "$RCH_WKR_NEXT"

echo "--- the canary's sshd starts 1.5 s late: retried, the whole rollout completes"
"${TESTBED[@]}" stop 1 "$TB" >/dev/null
(sleep 1.5 && "${TESTBED[@]}" start 1 "$TB" >/dev/null) &
BACKGROUND+=($!)
started=$EPOCHREALTIME
deploy 0 --version "$NEXT" --strategy canary --canary 25 --canary-wait 0
took=$(python3 -c "print(round($EPOCHREALTIME - $started, 1))")
json 'assert d["strategy"]["percent"] == 25, d["strategy"]
assert all(st["w%d" % k]["status"] == "Completed" for k in (1, 2, 3, 4)), st'
installed 1 "$NEXT" "$NEXT_SHA"
contains "$ERR" "w1: cannot connect to rchtest@127.0.0.1:$port1: "
grep -qE "warning\] w1: cannot connect to rchtest@127\.0\.0\.1:$port1: .*Connection refused; retry 1 of 2 in 1 s" <<<"$ERR" ||
  fail "no warn line for the first retry: $ERR"
grep -qE "w1: .*; retry 2 of 2 in 2 s" <<<"$ERR" || fail "no second retry (1 s, then 2 s): $ERR"
echo "    took ${took}s"

echo "--- an authentication failure is not retried: one connection reaches sshd"
reset_workers
sed -i "s|identity_file = \"$TB/client/id_ed25519\"|identity_file = \"$TMP/wrong_key\"|" "$CFG/workers.toml"
ssh-keygen -q -t ed25519 -N '' -f "$TMP/wrong_key"
log2=$TB/w2/sshd.log
before=$(grep -c 'Connection from 127.0.0.1' "$log2" || true)
deploy 1 --version "$NEXT" --worker w2
after=$(grep -c 'Connection from 127.0.0.1' "$log2" || true)
json 'assert st["w2"]["status"] == "Failed" and "authentication" in st["w2"]["error"], st'
[[ $((after - before)) == 1 ]] || fail "sshd saw $((after - before)) connections for one auth failure (want 1)"
[[ $ERR != *retry* ]] || fail "an authentication failure was retried: $ERR"
cp "$TB/workers.toml" "$CFG/workers.toml"

echo "--- connect_retries = 0: a refusal fails at once"
write_config 'connect_retries = 0'
"${TESTBED[@]}" stop 3 "$TB" >/dev/null
deploy 1 --version "$NEXT" --worker w3
json 'assert st["w3"]["status"] == "Failed" and "Connection refused" in st["w3"]["error"], st'
[[ $ERR != *retry* ]] || fail "connect_retries = 0 still retried: $ERR"
echo "--- connect_retries = 1, delay 0.2: one retry, then the error names the attempts"
write_config 'connect_retries = 1
connect_retry_delay = 0.2'
deploy 1 --version "$NEXT" --worker w3
json 'assert "(attempt 2 of 2)" in st["w3"]["error"], st["w3"]'
contains "$ERR" "retry 1 of 1 in 0.2 s"
echo "PASS"
