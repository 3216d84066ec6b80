#!/usr/bin/env bash
# known_hosts as OpenSSH keeps it, against the real sshd testbed: a @revoked
# key is refused even beside a plain line that trusts it, and under
# accept-new a file holding only the @revoked line is neither trusted nor
# appended to; accept-new writes hashed entries when the ssh config says
# HashKnownHosts yes, and OpenSSH's ssh accepts them with
# StrictHostKeyChecking=yes; four rch processes adding hosts at once lose no
# entry, and a known_hosts that is a symlink stays one.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

KH=$CFG/known_hosts
port() { cat "$TB/w$1/port"; }
key_of() { cut -d' ' -f1,2 <"$TB/w$1/ssh_host_ed25519_key.pub"; }
# status K: rch fleet status --json for worker wK, result in $OUT.
status() { expect_exit 0 "$RCH" fleet status --json --worker "w$1"; }

echo "--- @revoked beside a plain line for the same key: refused"
printf '[127.0.0.1]:%s %s\n@revoked [127.0.0.1]:%s %s\n' "$(port 1)" "$(key_of 1)" "$(port 1)" "$(key_of 1)" >"$KH"
status 1
json 'w = st["w1"]; assert not w["reachable"] and "REVOKED host key of 127.0.0.1:" in w["error"], w
assert "@revoked" in w["error"] and "known_hosts:2" in w["error"], w["error"]'

echo "--- accept-new with only the @revoked line: refused, nothing appended"
write_config 'host_key_policy = "accept-new"'
printf '@revoked * %s\n' "$(key_of 2)" >"$KH"
cp "$KH" "$TMP/kh.before"
status 2
json 'w = st["w2"]; assert not w["reachable"] and "REVOKED" in w["error"], w'
cmp -s "$KH" "$TMP/kh.before" || fail "accept-new appended to a file that revokes the key: $(cat "$KH")"

echo "--- HashKnownHosts yes: hashed entries, usable by ssh -o StrictHostKeyChecking=yes"
printf 'Host *\n  HashKnownHosts yes\n' >"$CFG/ssh_config"
: >"$TMP/real_known_hosts"
rm -f "$KH"
ln -s "$TMP/real_known_hosts" "$KH"
pids=()
for k in 1 2 3 4; do
  "$RCH" fleet status --json --worker "w$k" >"$TMP/status.$k" 2>"$TMP/status.$k.err" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent status failed: $(cat "$TMP"/status.*.err)"; done
[[ -L $KH ]] || fail "known_hosts is no longer a symlink"
[[ $(wc -l <"$TMP/real_known_hosts") == 4 ]] || fail "4 concurrent adds left: $(cat "$TMP/real_known_hosts")"
grep -qv '^|1|' "$TMP/real_known_hosts" && fail "an entry is not hashed: $(cat "$TMP/real_known_hosts")"
for k in 1 2 3 4; do
  grep -q "$(key_of "$k" | cut -d' ' -f2)" "$TMP/real_known_hosts" || fail "w$k's key is missing"
  ssh -F /dev/null -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$KH" -o GlobalKnownHostsFile=/dev/null \
    -o BatchMode=yes -i "$TB/client/id_ed25519" -p "$(port "$k")" rchtest@127.0.0.1 true ||
    fail "ssh does not accept rch's hashed entry for w$k"
done
grep -q "added new host key of 127.0.0.1:$(port 1) .*(hashed: HashKnownHosts yes)" "$TMP/status.1.err" ||
  fail "no warning for the added key: $(cat "$TMP/status.1.err")"

echo "--- then strict accepts them; HashKnownHosts no writes plain [host]:port"
write_config
status 3
json 'assert st["w3"]["reachable"], st["w3"]'
write_config 'host_key_policy = "accept-new"'
: >"$CFG/ssh_config"
: >"$TMP/real_known_hosts"
status 4
grep -q "^\[127.0.0.1\]:$(port 4) $(key_of 4)\$" "$TMP/real_known_hosts" || fail "plain entry expected: $(cat "$TMP/real_known_hosts")"
echo "PASS"
