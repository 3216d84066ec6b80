#!/usr/bin/env bash
# rch fleet deploy when things go wrong, against the real sshd testbed: a
# worker down before and during the deploy, the disk preflight, hook vetoes
# (pre_install, post_verify), --verify with an unhealthy agent, injection
# attempts through --version, --worker and workers.toml, and a changed host key.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

# ---- A worker whose sshd is down before the deploy fails at preflight; the others complete.
"${TESTBED[@]}" stop 2 "$TB" >/dev/null
snap_all down_before
start=$(date +%s)
deploy 1
(($(date +%s) - start < 10)) || fail "the deploy stalled on an unreachable worker"
json '
assert d["outcome"] == "failed", d
assert d["counts"] == {"completed": 3, "failed": 1, "skipped": 0, "rolled_back": 0, "aborted": 0}, d["counts"]
w = st["w2"]
assert w["status"] == "Failed" and w["error"].startswith("preflight: "), w
assert "127.0.0.1:" in w["error"] and "refused" in w["error"].lower(), w["error"]
assert [s["name"] for s in w["steps"]] == ["preflight"] and w["steps"][0]["status"] == "failed", w["steps"]
assert all(st[i]["status"] == "Completed" for i in ("w1", "w3", "w4")), d'
same_as down_before 2
for k in 1 3 4; do installed "$k" "$OWN" "$OWN_SHA"; done
"${TESTBED[@]}" start 2 "$TB" >/dev/null
reset_workers

# ---- A worker whose sshd dies mid-deploy (while its pre_install hook waits) fails; the others complete.
mkdir -p "$TMP/sd_mid/hooks" "$TMP/marks"
cat >"$TMP/sd_mid/hooks/pre_install.lua" <<'EOF'
-- Test hook: on w2, say we got here and wait (up to 20 s) for the test's go-ahead.
local rch = require "rch"
return function(ctx)
  if ctx.worker.id ~= "w2" then return true end
  local marks = os.getenv("TEST_MARKS")
  io.open(marks .. "/w2.reached", "w"):close()
  for _ = 1, 400 do
    local f = io.open(marks .. "/w2.go")
    if f then f:close() return true end
    rch.sleep(0.05)
  end
  return false, "test hook: no go-ahead"
end
EOF
export TEST_MARKS=$TMP/marks
GLOBAL=(--script-dir "$TMP/sd_mid")
deploy 1 &
mid_pid=$!
BACKGROUND+=("$mid_pid")
wait_for "$TMP/marks/w2.reached"
"${TESTBED[@]}" stop 2 "$TB" >/dev/null
touch "$TMP/marks/w2.go"
set +e; wait "$mid_pid"; mid_rc=$?; set -e
GLOBAL=()
# deploy ran in a subshell: its output is in $TMP/out and $TMP/err.
[[ $mid_rc == 0 ]] || fail "the deploy subshell failed ($mid_rc): $(cat "$TMP/out" "$TMP/err")"
OUT=$(cat "$TMP/out"); ERR=$(cat "$TMP/err")
json '
assert d["counts"]["completed"] == 3 and d["counts"]["failed"] == 1, d["counts"]
w = st["w2"]
assert w["status"] == "Failed" and w["error"].startswith("install: "), w
assert [s["name"] for s in w["steps"]] == ["preflight", "transfer", "install"], w["steps"]
assert w["steps"][1]["status"] == "completed" and w["steps"][2]["status"] == "failed", w["steps"]
assert "rollback failed" in w["error"], w["error"]
assert all(st[i]["status"] == "Completed" for i in ("w1", "w3", "w4")), d'
# w2 got the upload (verified, renamed into place) but never switched to it.
no_agent 2
cmp -s "$(root_of 2)/versions/v$OWN/rch-wkr" "$RCH_WKR" || fail "w2: the uploaded file is not complete"
[[ -z $(find "$(root_of 2)" -name '.rch-wkr.part.*' -o -name '.current.new') ]] || fail "w2: temp files left behind"
for k in 1 3 4; do installed "$k" "$OWN" "$OWN_SHA"; done
"${TESTBED[@]}" start 2 "$TB" >/dev/null
reset_workers

# ---- The disk preflight threshold above the free space blocks every worker and changes nothing.
write_config $'[preflight]\nmin_disk_mb = 99999999\n'
snap_all disk
deploy 1
json '
assert d["counts"] == {"completed": 0, "failed": 4, "skipped": 0, "rolled_back": 0, "aborted": 0}, d["counts"]
for w in d["workers"]:
    assert w["status"] == "Failed" and w["error"].startswith("preflight: disk_space: "), w
    assert "99999999 MB required" in w["error"], w["error"]
    assert [s["name"] for s in w["steps"]] == ["preflight"], w["steps"]'
same_as disk 1 2 3 4
# ...but a worker that already runs the target needs nothing: skipped, the issue only a warning.
write_config
deploy 0 --worker w1
write_config $'[preflight]\nmin_disk_mb = 99999999\n'
deploy 0 --worker w1
json 'assert d["outcome"] == "completed" and st["w1"]["status"] == "Skipped", d'
contains "$ERR" "worker w1: disk_space: "
contains "$ERR" "(already at $OWN: nothing to change)"
deploy 0 --worker w1 --dry-run
json '
assert [w["action"] for w in d["predictions"]] == ["Skip"], d
assert [i["severity"] for i in d["potential_issues"]] == ["warning"], d'
write_config
reset_workers

# ---- A root the agent user cannot write blocks that worker at preflight.
chmod 555 "$(root_of 4)"
snap_all readonly
deploy 1
json '
assert d["counts"]["completed"] == 3 and d["counts"]["failed"] == 1, d["counts"]
assert st["w4"]["status"] == "Failed" and st["w4"]["error"].startswith("preflight: root_writable: "), st["w4"]'
same_as readonly 4
chmod 755 "$(root_of 4)"
reset_workers

# ---- An artifact built for another architecture than the workers' (the ELF machine field
# patched): their own architecture's build must come from the release ([update] url, here a
# port nothing listens on), so every worker fails at preflight naming its architecture and the
# URL, and nothing is uploaded.
ARTIFACT=$RCH_HOME/versions/v$NEXT/rch-wkr py '
p = os.environ["ARTIFACT"]
os.makedirs(os.path.dirname(p), exist_ok=True)
b = bytearray(open(os.environ["RCH_WKR_NEXT"], "rb").read())
assert b[:4] == b"\x7fELF" and b[5] == 1, "little-endian ELF expected"
machine = int.from_bytes(b[18:20], "little")
b[18:20] = (183 if machine != 183 else 62).to_bytes(2, "little")  # aarch64, or x86_64 on an aarch64 host
open(p, "wb").write(b)
os.chmod(p, 0o755)'
snap_all arch
write_config $'[update]\nurl = "http://127.0.0.1:9/releases.json"\n'
deploy 1 --version "$NEXT"
json '
assert d["counts"]["failed"] == 4, d["counts"]
for w in d["workers"]:
    assert w["status"] == "Failed" and w["error"].startswith("preflight: no rch-wkr '"$NEXT"' for %s: " % os.uname().machine), w
    assert "http://127.0.0.1:9/releases.json" in w["error"], w["error"]'
same_as arch 1 2 3 4
write_config
unstage "$NEXT"

# ---- A pre_install veto (hooks/ in the config dir) stops w3 with its message; the others complete.
mkdir -p "$CFG/hooks"
cat >"$CFG/hooks/pre_install.lua" <<'EOF'
return function(ctx)
  if ctx.worker.id == "w3" then return false, "site freeze" end
  return true
end
EOF
deploy 1
json '
assert d["counts"] == {"completed": 3, "failed": 1, "skipped": 0, "rolled_back": 0, "aborted": 0}, d["counts"]
w = st["w3"]
assert w["status"] == "Failed" and w["error"] == "pre_install: hook pre_install vetoed: site freeze", w
assert all(st[i]["status"] == "Completed" for i in ("w1", "w2", "w4")), d'
no_agent 3
for k in 1 2 4; do installed "$k" "$OWN" "$OWN_SHA"; done
rm -rf "$CFG/hooks"
audit_has_failed() {
  DEP=$(json 'print(d["id"])') WID=$1 WANT=$2 py '
ev = [e for e in audit() if e["deployment_id"] == os.environ["DEP"]]
f = [e for e in ev if e["event_type"] == "WorkerFailed" and e["worker_id"] == os.environ["WID"]]
assert len(f) == 1 and os.environ["WANT"] in f[0]["details"]["error"], f'
}
audit_has_failed w3 "site freeze"

# ---- A post_verify veto rolls that worker back to the version it ran before.
reset_workers
deploy 0
stage "$NEXT" "$RCH_WKR_NEXT"
mkdir -p "$TMP/sd_verify/hooks"
cat >"$TMP/sd_verify/hooks/post_verify.lua" <<'EOF'
return function(ctx)
  if ctx.worker.id == "w1" then return false, "smoke test failed" end
  -- ctx.exec quotes every argument: this creates one oddly named file and runs nothing else.
  local r, err = ctx.exec({ "touch", ctx.root .. "/hook ran; $(echo INJECTED) `echo X` 'q\"*" })
  if not r or r.code ~= 0 then return false, "exec failed: " .. tostring(err or r.err) end
  return true
end
EOF
GLOBAL=(--script-dir "$TMP/sd_verify")
deploy 1 --version "$NEXT"
GLOBAL=()
json '
assert d["counts"] == {"completed": 3, "failed": 0, "skipped": 0, "rolled_back": 1, "aborted": 0}, d["counts"]
w = st["w1"]
assert w["status"] == "RolledBack" and "hook post_verify vetoed: smoke test failed" in w["error"], w
assert [s["name"] for s in w["steps"]] == ["preflight", "transfer", "install", "verify"], w["steps"]'
installed 1 "$OWN" "$OWN_SHA"
for k in 2 3 4; do
  installed "$k" "$NEXT" "$NEXT_SHA"
  # Exactly the literal name: no shell expanded, split or globbed it.
  [[ $(cd "$(root_of "$k")" && ls -d hook*) == "hook ran; \$(echo INJECTED) \`echo X\` 'q\"*" ]] ||
    fail "w$k: the hook's ctx.exec made: $(cd "$(root_of "$k")" && ls -d hook*)"
done
DEP=$(json 'print(d["id"])') py '
ev = [e for e in audit() if e["deployment_id"] == os.environ["DEP"]]
rb = [e for e in ev if e["event_type"] == "WorkerRolledBack"]
assert [e["worker_id"] for e in rb] == ["w1"] and rb[0]["details"]["to_version"] == os.environ["OWN"], rb
assert ev[-1]["event_type"] == "DeploymentFailed", ev[-1]'

# ---- --verify with an agent whose health check fails: verify fails and the worker is rolled back,
# to its previous version (w2, w3 run NEXT) or to no agent at all (w4, fresh).
reset_workers
deploy 0 --version "$NEXT" --worker w2,w3
stage "$OWN" "$RCH_WKR_UNHEALTHY"
snap_all verify
deploy 1 --verify --worker w2,w3,w4
json '
assert d["counts"] == {"completed": 0, "failed": 0, "skipped": 0, "rolled_back": 3, "aborted": 0}, d["counts"]
for i in ("w2", "w3", "w4"):
    w = st[i]
    assert w["status"] == "RolledBack" and w["error"].startswith("verify: health check failed"), w
assert st["w2"]["current_version"] == os.environ["NEXT"] and st["w4"]["current_version"] is None, d'
installed 2 "$NEXT" "$NEXT_SHA"
installed 3 "$NEXT" "$NEXT_SHA"
no_agent 4
same_as verify 1
unstage "$OWN"

# set_line REGEX TEXT: replaces the first line of $CFG/workers.toml matching REGEX with TEXT.
set_line() {
  RE=$1 TEXT=$2 py '
p = os.environ["RCH_CONFIG_DIR"] + "/workers.toml"
lines = open(p).read().split("\n")
i = next(i for i, l in enumerate(lines) if re.search(os.environ["RE"], l))
lines[i] = os.environ["TEXT"]
open(p, "w").write("\n".join(lines))'
}

# ---- Injection attempts: nothing may run, on this machine or a worker.
reset_workers
mark=/tmp/pwned-rch-$$
rm -f "$mark"*
snap_all inject
deployments_before=$(ls "$RCH_STATE_DIR/deployments" | wc -l)
expect_exit 2 "$RCH" fleet deploy --no-toolchain --version "$OWN;touch $mark-v"
contains "$ERR" "invalid version"
expect_exit 2 "$RCH" fleet deploy --no-toolchain --version "\$(touch $mark-v2)"
expect_exit 2 "$RCH" fleet deploy --no-toolchain --worker "w1;touch $mark-w"
contains "$ERR" "matches no worker"
# A worker id with shell syntax is a configuration error.
cp "$CFG/workers.toml" "$TMP/workers.toml.orig"
set_line '^id = "w1"$' "id = \"w1\$(touch $mark-id)\""
expect_exit 2 "$RCH" fleet deploy --no-toolchain
contains "$ERR" "workers.toml"
[[ $(ls "$RCH_STATE_DIR/deployments" | wc -l) == "$deployments_before" ]] || fail "a refused deploy created a deployment"
# A root full of shell syntax (single and double quotes, $(), backticks, ;) is a literal directory.
weird="$(root_of 1)/x y/\$(touch $mark-r1)\`touch $mark-r2\`;touch $mark-r3'\"\$(touch $mark-r4)\"'"
cp "$TMP/workers.toml.orig" "$CFG/workers.toml"
set_line "^root = \"$(root_of 1)\"\$" "root = $(WEIRD=$weird py 'print(json.dumps(os.environ["WEIRD"]))')"
grep -qF 'x y/$(touch' "$CFG/workers.toml" || fail "could not write the weird root into workers.toml"
deploy 0 --worker w1
json 'assert st["w1"]["status"] == "Completed", d'
[[ -d $weird ]] || fail "the literal root directory was not created"
[[ $(readlink "$weird/current") == "versions/v$OWN" && $("$weird/bin/rch-wkr" --version) == "rch-wkr $OWN" ]] ||
  fail "the agent is not installed in the literal root"
# Redeploy and --force through the same root: still nothing runs.
deploy 0 --worker w1 --force
ls -d "$mark"* 2>/dev/null && fail "an injected command ran: $(ls -d "$mark"*)"
same_as inject 2 3 4
cp "$TMP/workers.toml.orig" "$CFG/workers.toml"

# ---- A changed host key for one worker: it fails naming the key problem; the others complete.
reset_workers
ssh-keygen -q -t ed25519 -N '' -f "$TMP/other_key" </dev/null >/dev/null
port2=$(<"$TB/w2/port")
{ grep -v "^\[127.0.0.1\]:$port2 " "$TB/known_hosts"; echo "[127.0.0.1]:$port2 $(cut -d' ' -f1,2 "$TMP/other_key.pub")"; } \
  >"$CFG/known_hosts"
snap_all hostkey
deploy 1
json '
assert d["counts"]["completed"] == 3 and d["counts"]["failed"] == 1, d["counts"]
w = st["w2"]
assert w["status"] == "Failed" and w["error"].startswith("preflight: host key of 127.0.0.1:"), w
assert "CHANGED" in w["error"] and "known_hosts" in w["error"], w["error"]'
same_as hostkey 2
cp "$TB/known_hosts" "$CFG/known_hosts"

# ---- A different build under the version a worker already runs is refused at
# preflight: it would overwrite the only copy a rollback could return to.
reset_workers
unstage "$OWN"
deploy 0 --worker w1,w2
stage "$OWN" "$RCH_WKR_UNHEALTHY"
snap_all sameversion
deploy 1 --worker w1,w2 --force --verify
json '
for i in ("w1", "w2"):
    w = st[i]
    assert w["status"] == "Failed" and w["error"].startswith("preflight: same_version: the worker runs"), w
    assert [s["name"] for s in w["steps"]] == ["preflight"], w["steps"]'
same_as sameversion 1 2
installed 1 "$OWN" "$OWN_SHA"
# On a worker without that version the same build installs normally.
deploy 0 --worker w3
installed 3 "$OWN" "$UNHEALTHY_SHA"
unstage "$OWN"

echo "deploy_failures_test: ok"
