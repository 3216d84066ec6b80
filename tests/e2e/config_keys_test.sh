#!/usr/bin/env bash
# Every configuration key takes effect: one case per key of config.toml (the
# list comes from `rch config check --json`, so a key added later without a
# case here fails this test) and of workers.toml, run against the sshd
# testbed. A case either shows the key's effect here, or names the test that
# exercises it at length (which must set the key). Precedence: flag >
# environment > config.toml > built-in default, where each exists.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

WORKERS=$CFG/workers.toml
cp "$WORKERS" "$TMP/workers.all"
only_w1() { python3 - "$TMP/workers.all" "$1" >"$WORKERS" <<'EOF_PY'
import sys
blocks = open(sys.argv[1]).read().split("[[workers]]")
w1 = [b for b in blocks[1:] if 'id = "w1"' in b][0]
print("[[workers]]" + w1.replace("\n[", "\n" + sys.argv[2] + "\n[", 1) if sys.argv[2] else "[[workers]]" + w1)
EOF_PY
}
restore_workers() { cp "$TMP/workers.all" "$WORKERS"; }
# with TOML: config.toml = testbed defaults plus TOML for the next command(s).
with() { write_config "$1"; }
# elsewhere TEST KEY: TEST (tests/e2e) exercises KEY (the last part of a dotted key) at length.
elsewhere() {
  # (a line of its own, or after the \n of a $'…' string)
  grep -qE "(^|[^a-z_]|\\\\n)$2 = " "$RCH_SOURCE_DIR/tests/e2e/$1" || fail "$1 does not set $2"
}

# ---------------------------------------------------------------- config.toml cases
case_defaults_parallel() {
  with "parallel = 1"
  deploy 0 --force
  json 'assert d["peak_parallelism"] == 1 and d["strategy"]["parallelism"] == 1, d'
  deploy 0 --force --parallel 3 # the flag wins
  json 'assert d["strategy"]["parallelism"] == 3, d["strategy"]'
}
case_defaults_probe_parallel() { elsewhere probe_parallel_test.sh probe_parallel; }
case_defaults_connect_timeout() {
  # A port that accepts TCP and never says a word: the SSH banner wait ends at the timeout.
  python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
open(sys.argv[1], "w").write(str(s.getsockname()[1])); time.sleep(60)' "$TMP/mute.port" &
  local mute=$!
  BACKGROUND+=("$mute")
  for _ in $(seq 50); do [[ -s $TMP/mute.port ]] && break; sleep 0.1; done
  only_w1 ""
  sed -i "s/^port = .*/port = $(<"$TMP/mute.port")/" "$WORKERS"
  with "connect_timeout = 1"
  local t0=$SECONDS
  expect_exit 0 "$RCH" fleet status --worker w1 --json
  json 'assert d["workers"][0]["reachable"] is False, d'
  ((SECONDS - t0 < 8)) || fail "connect_timeout = 1 took $((SECONDS - t0)) s"
  kill "$mute"
  restore_workers
}
case_defaults_command_timeout() {
  with "command_timeout = 1"
  printf 'local fleet = require "rch.fleet"\nlocal r = fleet.exec(fleet.workers({ "w1" }), { "sleep", "5" })\nprint(r.w1.timed_out)\n' \
    >"$TMP/sleep.lua"
  expect_exit 0 "$RCH" run "$TMP/sleep.lua"
  contains "$OUT" "true"
}
case_defaults_host_key_policy() {
  : >"$TMP/empty_known_hosts"
  printf '[defaults]\nknown_hosts = "%s"\nssh_config = "%s"\nhost_key_policy = "accept-new"\n' \
    "$TMP/empty_known_hosts" "$CFG/ssh_config" >"$CFG/config.toml"
  expect_exit 0 "$RCH" fleet status --worker w1
  grep -q "ssh-ed25519\|ecdsa\|ssh-rsa" "$TMP/empty_known_hosts" || fail "accept-new added nothing"
}
case_defaults_known_hosts() {
  : >"$TMP/other_known_hosts"
  printf '[defaults]\nknown_hosts = "%s"\nssh_config = "%s"\n' "$TMP/other_known_hosts" "$CFG/ssh_config" >"$CFG/config.toml"
  expect_exit 0 "$RCH" fleet status --worker w1 --json
  contains "$OUT" "is not in $TMP/other_known_hosts"
}
case_defaults_ssh_config() {
  local port; port=$(awk '/^port = /{print $3; exit}' "$TMP/workers.all")
  printf 'Host w1-alias\n  HostName 127.0.0.1\n  Port %s\n' "$port" >"$TMP/ssh_config"
  printf '[defaults]\nknown_hosts = "%s"\nssh_config = "%s"\n' "$CFG/known_hosts" "$TMP/ssh_config" >"$CFG/config.toml"
  only_w1 ""
  sed -i 's/^host = .*/host = "w1-alias"/; /^port = /d' "$WORKERS"
  expect_exit 0 "$RCH" fleet status --worker w1 --json
  json 'assert d["workers"][0]["reachable"] is True, d'
  restore_workers
}
case_defaults_max_output_bytes() {
  with "max_output_bytes = 1024"
  printf 'local fleet = require "rch.fleet"\nlocal r = fleet.exec(fleet.workers({ "w1" }), { "head", "-c", "5000", "/dev/zero" })\nprint(#r.w1.out, r.w1.out_truncated)\n' \
    >"$TMP/flood.lua"
  expect_exit 0 "$RCH" run "$TMP/flood.lua"
  contains "$OUT" "1024	true"
}
case_defaults_min_transfer_mbps() {
  # An upload's time limit: command_timeout + the artifact's size at this rate.
  local size limit
  size=$(stat -c %s "$RCH_WKR")
  for mbps in 1000 2; do
    with "command_timeout = 7
min_transfer_mbps = $mbps"
    reset_workers # nothing on w1: the artifact is uploaded
    deploy 0 --worker w1 -v
    limit=$(python3 -c 'import math, sys; print(7 + math.ceil(int(sys.argv[1]) * 8 / (float(sys.argv[2]) * 1e6)))' \
      "$size" "$mbps")
    contains "$ERR" "MB/s, limit $limit s)"
  done
}
case_defaults_stall_timeout() { elsewhere deploy_timeouts_test.sh stall_timeout; }
case_defaults_connect_retries() { elsewhere connect_retry_test.sh connect_retries; }
case_defaults_connect_retry_delay() { elsewhere connect_retry_test.sh connect_retry_delay; }
case_preflight_min_disk_mb() {
  with $'[preflight]\nmin_disk_mb = 99999999'
  expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run --json --worker w1 --force
  json 'assert d["predictions"][0]["action"] == "Blocked", d'
}
# [preflight] TOOL: "required" blocks a worker without TOOL, "ignore" drops even the warning.
tool_case() {
  local tool=$1 have=0
  on 1 "command -v $tool" >/dev/null && have=1
  with $'[preflight]\n'"$tool = \"required\""
  expect_exit 0 "$RCH" fleet deploy --dry-run --json --worker w1 --force
  HAVE=$have TOOL=$tool json '
blocked = d["predictions"][0]["action"] == "Blocked"
assert blocked == (os.environ["HAVE"] == "0"), d'
  with $'[preflight]\n'"$tool = \"ignore\""
  expect_exit 0 "$RCH" fleet deploy --dry-run --json --worker w1 --force
  TOOL=$tool json 'assert not any(i["check"] == os.environ["TOOL"] for i in d["potential_issues"]), d["potential_issues"]'
}
case_preflight_rsync() { tool_case rsync; }
case_preflight_zstd() { tool_case zstd; }
case_preflight_rustup() { tool_case rustup; }
case_toolchain_rust() { elsewhere deploy_toolchain_test.sh rust; }
case_toolchain_update() { elsewhere deploy_toolchain_test.sh update; }
case_deploy_keep_versions() { elsewhere deploy_repair_prune_test.sh keep_versions; }
case_deploy_compress() { elsewhere deploy_transfer_test.sh compress; }
case_deploy_delta() { elsewhere deploy_transfer_test.sh delta; }
case_deploy_source() { elsewhere deploy_pull_test.sh source; }
case_canary_percent() {
  with $'[canary]\npercent = 50'
  expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run --strategy canary
  contains "$OUT" "Strategy: canary 50%"
  expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run --canary 25 # the flag wins
  contains "$OUT" "Strategy: canary 25%"
}
case_canary_wait() {
  with $'[canary]\nwait = 7'
  expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run --strategy canary
  contains "$OUT" "wait 7s"
}
case_canary_interval() { elsewhere canary_policy_test.sh interval; }
case_http_timeout() { elsewhere canary_policy_test.sh timeout; }
case_http_max_body_mb() { elsewhere canary_policy_test.sh max_body_mb; }
case_update_url() { elsewhere update_test.sh url; }
case_update_channel() { elsewhere update_test.sh channel; }
case_update_minisign_pubkey() { elsewhere update_test.sh minisign_pubkey; }
case_update_ca_file() { elsewhere update_test.sh ca_file; }
case_update_keep() { elsewhere update_test.sh keep; }
case_update_connect_timeout() { elsewhere update_test.sh connect_timeout; }
case_update_transfer_timeout() { elsewhere update_test.sh transfer_timeout; }
case_audit_syslog() { elsewhere audit_test.sh syslog; }
case_audit_syslog_socket() { elsewhere audit_test.sh syslog_socket; }
case_audit_rotate_mb() { elsewhere retention_test.sh rotate_mb; }
case_audit_keep_files() { elsewhere retention_test.sh keep_files; }
case_state_keep_deployments() { elsewhere retention_test.sh keep_deployments; }

# ---------------------------------------------------------------- workers.toml cases
wcase_root() {
  only_w1 ""
  sed -i "s|^root = .*|root = \"$(root_of 1)/nested\"|" "$WORKERS"
  deploy 0 --worker w1
  [[ -L $(root_of 1)/nested/current ]] || fail "root: nothing installed under the configured root"
  restore_workers
}
wcase_identity_file() {
  only_w1 ""
  sed -i "s|^identity_file = .*|identity_file = \"$TMP/no_such_key\"|" "$WORKERS"
  expect_exit 0 "$RCH" fleet status --worker w1 --json
  contains "$OUT" "$TMP/no_such_key"
  restore_workers
}
wcase_tags() {
  expect_exit 0 "$RCH" fleet status --worker @gpu --json
  json 'assert sorted(w["worker_id"] for w in d["workers"]) == ["w2", "w4"], d'
}
wcase_user() {
  only_w1 ""
  sed -i 's/^user = .*/user = "nosuchuser"/' "$WORKERS"
  expect_exit 0 "$RCH" fleet status --worker w1 --json
  contains "$OUT" "nosuchuser@127.0.0.1"
  restore_workers
}
wcase_port() {
  only_w1 ""
  sed -i 's/^port = .*/port = 1/' "$WORKERS"
  expect_exit 0 "$RCH" fleet status --worker w1 --json
  contains "$OUT" "127.0.0.1:1"
  restore_workers
}
wcase_host() {
  only_w1 ""
  sed -i 's/^host = .*/host = "127.0.0.2"/' "$WORKERS"
  expect_exit 0 "$RCH" fleet status --worker w1 --json
  contains "$OUT" "127.0.0.2"
  restore_workers
}
wcase_certificate_file() { elsewhere ssh_certificates_test.sh certificate_file; }
wcase_id() { expect_exit 0 "$RCH" fleet status --worker w3 --json; json 'assert d["workers"][0]["worker_id"] == "w3", d'; }

# ---------------------------------------------------------------- every key has a case
write_config
expect_exit 0 "$RCH" config check --json
KEYS=$(python3 -c 'import json, sys; print(" ".join(e["key"] for e in json.loads(sys.argv[1])["settings"]))' "$OUT")
[[ $(wc -w <<<"$KEYS") -ge 30 ]] || fail "config check lists too few keys: $KEYS"
WKEYS="id host user port identity_file certificate_file root tags"
missing=()
for key in $KEYS; do declare -F "case_${key//./_}" >/dev/null || missing+=("$key"); done
for key in $WKEYS; do declare -F "wcase_$key" >/dev/null || missing+=("workers.toml $key"); done
# workers.toml keys the README documents must all be here.
for key in $(sed -n '/^# workers.toml$/,/^```$/p' "$RCH_SOURCE_DIR/README.md" | awk -F' *= *' '/^[a-z_]+ *=/{print $1}'); do
  [[ " $WKEYS " == *" $key "* ]] || missing+=("workers.toml $key (README)")
done
((${#missing[@]} == 0)) || fail "config keys without a case in config_keys_test.sh: ${missing[*]}"

for key in $KEYS; do
  echo "--- $key"
  "case_${key//./_}"
  write_config
done
for key in $WKEYS; do
  echo "--- workers.toml $key"
  "wcase_$key"
done
echo "PASS ($(wc -w <<<"$KEYS") config.toml keys, $(wc -w <<<"$WKEYS") workers.toml keys)"
