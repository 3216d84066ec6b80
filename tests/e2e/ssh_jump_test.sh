#!/usr/bin/env bash
# Workers given as Host aliases, through ProxyJump, against the real sshd
# testbed: status text and --json show host (as configured), hostname, address,
# port, user and jump; a deploy through a jump host works and its -v line names
# the jump, key exchange and cipher; a dead jump host is named with its hop;
# an identity file protected by a passphrase, with no agent, says so.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

p1=$(<"$TB/w1/port") p2=$(<"$TB/w2/port")
cat >"$CFG/ssh_config" <<EOF_CFG
Host w1-alias
  HostName 127.0.0.1
  Port $p1
  User rchtest
  ProxyJump bastion
Host w2-alias
  HostName 127.0.0.1
  Port $p2
  User rchtest
Host bastion
  HostName 127.0.0.1
  Port $p2
  User rchtest
  IdentityFile $TB/client/id_ed25519
  UserKnownHostsFile $CFG/known_hosts
  StrictHostKeyChecking yes
Host dead-jump-target
  HostName 127.0.0.1
  Port $p1
  User rchtest
  ProxyJump dead-bastion,bastion
Host dead-bastion
  HostName 127.0.0.1
  Port 1
EOF_CFG
cat >"$CFG/workers.toml" <<EOF_W
[[workers]]
id = "w1"
host = "w1-alias"
identity_file = "$TB/client/id_ed25519"
root = "$TB/w1/root"

[[workers]]
id = "w2"
host = "w2-alias"
identity_file = "$TB/client/id_ed25519"
root = "$TB/w2/root"

[[workers]]
id = "w3"
host = "dead-jump-target"
identity_file = "$TB/client/id_ed25519"
root = "$TB/w3/root"
EOF_W

echo "--- status shows where each alias really goes"
expect_exit 0 "$RCH" fleet status --json --worker w1,w3
json 'w = st["w1"]
assert (w["host"], w["hostname"], w["address"], w["port"], w["user"], w["jump"]) == ("w1-alias", "127.0.0.1", "127.0.0.1", '"$p1"', "rchtest", "bastion"), w
assert w["reachable"], w
w = st["w3"]
assert w["jump"] == "dead-bastion,bastion" and not w["reachable"], w
assert "through ProxyJump jump host dead-bastion (hop 1 of 3) failed: " in w["error"], w["error"]
assert "port 1" in w["error"], w["error"]'
expect_exit 0 "$RCH" fleet status --worker w1
contains "$OUT" "w1-alias = rchtest@127.0.0.1:$p1 via bastion"

echo "--- a deploy through the jump host; -v names the jump, kex and cipher"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --worker w1 -v
grep -qE "connected to rchtest@127\.0\.0\.1:$p1 \(host w1-alias, .*; via jump bastion, kex [a-z0-9@.-]+, cipher [a-z0-9@.-]+, host key: known_hosts $CFG/known_hosts:1, login: identity file $TB/client/id_ed25519\)" <<<"$ERR" ||
  fail "no connection line naming jump, kex and cipher: $ERR"
installed 1 "$OWN" "$OWN_SHA"

echo "--- an identity file with a passphrase and no agent"
cp "$TB/client/id_ed25519" "$TMP/locked"
ssh-keygen -q -p -N secret-phrase -f "$TMP/locked"
sed -i "s|^identity_file = .*|identity_file = \"$TMP/locked\"|" "$CFG/workers.toml"
env -u SSH_AUTH_SOCK "$RCH" fleet status --json --worker w2 >"$TMP/out" 2>"$TMP/err" || true
OUT=$(<"$TMP/out")
json 'e = st["w2"]["error"]; assert "is protected by a passphrase" in e and "ssh-add '"$TMP"'/locked" in e, e'
echo "PASS"
