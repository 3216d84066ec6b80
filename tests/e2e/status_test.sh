#!/usr/bin/env bash
# rch fleet status against the real sshd testbed: versions, an unreachable
# worker, host-key refusals, --worker.
source "$(dirname "$0")/lib.sh"
: "${RCH_TESTBED_DIR:?}" "${RCH_WKR:?}"
TB=$RCH_TESTBED_DIR
export RCH_CONFIG_DIR=$TB RCH_STATE_DIR="$TMP/state" RCH_HOME="$TMP/home"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1" <<<"$OUT"; }

cleanup() {
  bash "$RCH_SOURCE_DIR/scripts/testbed.sh" start 2 "$TB" >/dev/null 2>&1 || true
  rm -rf "$TB/w1/root/versions" "$TB/w1/root/current" "$TB/w1/root/bin"
  rm -rf "$TMP"
}
trap cleanup EXIT

expect_exit 0 "$RCH" fleet status --json
json 'w=d["workers"]; assert [x["worker_id"] for x in w]==["w1","w2","w3","w4"], w
for x in w:
    assert x["reachable"] is True and x["version"] is None and x["error"] is None, x
    assert set(x)=={"worker_id","host","hostname","address","port","user","jump","reachable","root","version","versions","draining",
                    "active_builds","disk_free_mb","last_deployment","error"}, x'

# An agent installed by hand in w1's layout shows its version.
v=$("$RCH_WKR" --version); v=${v#rch-wkr }
owner=$(stat -c %U "$TB/w1/root")
mkdir -p "$TB/w1/root/versions/v$v" "$TB/w1/root/bin"
cp "$RCH_WKR" "$TB/w1/root/versions/v$v/rch-wkr"
ln -sfn "versions/v$v" "$TB/w1/root/current"
ln -sfn ../current/rch-wkr "$TB/w1/root/bin/rch-wkr"
chown -R "$owner" "$TB/w1/root"
expect_exit 0 "$RCH" fleet status --json
json "w=d['workers']; assert w[0]['version']=='$v', w[0]; assert w[1]['version'] is None, w[1]"
expect_exit 0 "$RCH" fleet status
grep -qE "^w1 .* yes +$v" <<<"$OUT" || fail "table row of w1: $OUT"

# --worker narrows the probe.
expect_exit 0 "$RCH" fleet status --worker w3 --json
json 'assert [x["worker_id"] for x in d["workers"]]==["w3"]'

# A stopped sshd: that worker is unreachable with the reason, the rest answer, quickly.
bash "$RCH_SOURCE_DIR/scripts/testbed.sh" stop 2 "$TB" >/dev/null
start=$(date +%s)
expect_exit 0 "$RCH" fleet status --json
(( $(date +%s) - start < 8 )) || fail "status stalled on an unreachable worker"
json 'w={x["worker_id"]:x for x in d["workers"]}
assert w["w2"]["reachable"] is False and "127.0.0.1" in w["w2"]["error"], w["w2"]
assert all(w[i]["reachable"] for i in ("w1","w3","w4")), w'
bash "$RCH_SOURCE_DIR/scripts/testbed.sh" start 2 "$TB" >/dev/null

# Strict host-key checking: a host missing from known_hosts, and a changed key.
mkdir -p "$TMP/cfg"
cp "$TB/workers.toml" "$TMP/cfg/"
: >"$TMP/cfg/known_hosts"
printf '[defaults]\nknown_hosts = "%s"\n' "$TMP/cfg/known_hosts" >"$TMP/cfg/config.toml"
RCH_CONFIG_DIR="$TMP/cfg" expect_exit 0 "$RCH" fleet status --json
json 'assert all(not x["reachable"] for x in d["workers"]), d
assert all("known_hosts" in x["error"] for x in d["workers"]), d'
ssh-keygen -q -t ed25519 -N '' -f "$TMP/other" >/dev/null
port1=$(awk -F' = ' '/^port/{print $2; exit}' "$TB/workers.toml")
{ grep -v "^\[127.0.0.1\]:$port1 " "$TB/known_hosts"; echo "[127.0.0.1]:$port1 $(cut -d' ' -f1,2 "$TMP/other.pub")"; } >"$TMP/cfg/known_hosts"
RCH_CONFIG_DIR="$TMP/cfg" expect_exit 0 "$RCH" fleet status --json
json 'w={x["worker_id"]:x for x in d["workers"]}
assert not w["w1"]["reachable"] and "CHANGED" in w["w1"]["error"].upper(), w["w1"]
assert w["w2"]["reachable"], w["w2"]'
echo "status_test: ok"
