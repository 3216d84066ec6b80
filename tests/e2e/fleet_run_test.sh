#!/usr/bin/env bash
# rch run against the real sshd testbed: the maintenance example (drain the
# gpu workers, clean up, undrain, audit), a script error naming file:line,
# the script's return value as exit code, fleet.upload to a path with spaces
# and $() kept literal.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
EXAMPLE=$RCH_SOURCE_DIR/hooks/examples/maintenance_gpu_cleanup.lua
draining() { [[ -e $(root_of "$1")/state/drain ]]; }
# A directory the worker account can read and write (the workers log in as rchtest when run as root).
SHARED=$(mktemp -d /tmp/rch-run-test.XXXXXX)
chmod 777 "$SHARED"
WHOME=$(on 1 'printf %s "$HOME"')
[[ -n $WHOME ]] || fail "no HOME on the workers"
# The upload test's would-be shell commands create files named after this run.
TOKEN=pwned-$$-$RANDOM
trap 'rm -rf "$SHARED" "$WHOME/$TOKEN"-? "$WHOME/drop box"; deploy_cleanup' EXIT

deploy 0

# ---- The example, as shipped: the gpu workers (w2, w4) are drained, cleaned, undrained; exit 0.
on 2 'mkdir -p "$HOME/.cache/rch-build" && echo junk >"$HOME/.cache/rch-build/junk"'
expect_exit 0 "$RCH" run "$EXAMPLE" gpu
[[ $(grep -cE '^ok   w[24] ' <<<"$OUT") == 2 ]] || fail "example output: $OUT"
grep -qE '^(ok  |FAIL) w[13] ' <<<"$OUT" && fail "the example touched a non-gpu worker: $OUT"
on 2 'test ! -e "$HOME/.cache/rch-build"' || fail "the default cleanup command did not run"
for k in 1 2 3 4; do draining "$k" && fail "w$k left draining by the example"; done
py '
ev = [e for e in audit() if e["event_type"].startswith("Maintenance")]
assert [e["event_type"] for e in ev] == ["MaintenanceStarted", "MaintenanceWorker", "MaintenanceWorker", "MaintenanceCompleted"], ev
assert ev[0]["worker_id"] is None and ev[0]["details"]["tag"] == "gpu" and ev[0]["details"]["workers"] == 2, ev[0]
assert sorted(e["worker_id"] for e in ev[1:3]) == ["w2", "w4"], ev
assert all(e["details"] == {"ok": True, "exit_code": 0} for e in ev[1:3]), ev
assert ev[3]["details"] == {"tag": "gpu", "cleaned": 2, "failed": 0, "busy": 0}, ev[3]
assert len({e["deployment_id"] for e in ev}) == 1 and ev[0]["deployment_id"].startswith("script:"), ev'
expect_exit 0 "$RCH" fleet audit verify "$RCH_STATE_DIR/audit.jsonl"
contains "$OUT" "hash chain intact"

# ---- With a probe as the cleanup command: on each worker it records whether
# the worker is draining and refuses new jobs at that moment.
{
  echo 'p=${SSH_CONNECTION##* }'
  echo 'case $p in'
  for k in 1 2 3 4; do echo "  $(port_of "$k")) k=$k ;;"; done
  echo 'esac'
  echo "r=$TB/w\$k/root"
  echo 'if [ -e "$r/state/drain" ]; then d=draining; else d=open; fi'
  echo 'if "$r/bin/rch-wkr" exec -- true 2>/dev/null; then j=accepts; else j=refuses; fi'
  echo "echo \"w\$k \$d \$j\" >>$SHARED/log"
  echo 'echo "probed w$k"'
} >"$SHARED/probe.sh"
expect_exit 0 "$RCH" run "$EXAMPLE" gpu sh "$SHARED/probe.sh"
[[ $(sort "$SHARED/log") == $'w2 draining refuses\nw4 draining refuses' ]] || fail "probe log: $(cat "$SHARED/log")"
contains "$OUT" "ok   w2 probed w2"
contains "$OUT" "ok   w4 probed w4"
for k in 1 2 3 4; do
  draining "$k" && fail "w$k left draining by the example"
  on "$k" "$(root_of "$k")/bin/rch-wkr" exec -- true || fail "w$k refuses jobs after the example"
done
expect_exit 0 "$RCH" fleet audit verify "$RCH_STATE_DIR/audit.jsonl"
# A failing cleanup command: exit 1, recorded as such, the workers still undrained.
expect_exit 1 "$RCH" run "$EXAMPLE" gpu false
[[ $(grep -cE '^FAIL w[24] ' <<<"$OUT") == 2 ]] || fail "example output: $OUT"
for k in 2 4; do draining "$k" && fail "w$k left draining after a failed cleanup"; done
py '
ev = [e for e in audit() if e["event_type"] == "MaintenanceCompleted"][-1]
assert ev["details"] == {"tag": "gpu", "cleaned": 0, "failed": 2, "busy": 0}, ev'
expect_exit 2 "$RCH" run "$EXAMPLE" no-such-tag
contains "$ERR" "no workers tagged no-such-tag"

# ---- Script errors name file:line (before and after the script has yielded to I/O); exit 1.
cat >"$TMP/boom.lua" <<'EOF'
local fleet = require "rch.fleet"
local n = #fleet.workers()
error("boom with " .. n .. " workers")
EOF
expect_exit 1 "$RCH" run "$TMP/boom.lua"
contains "$ERR" "$TMP/boom.lua:3: boom with 4 workers"
cat >"$TMP/late.lua" <<'EOF'
local fleet = require "rch.fleet"
local r = fleet.exec(fleet.workers("w1"), { "true" })
assert(r.w1.code == 0, "exec failed")

local missing = nil
return missing.field
EOF
expect_exit 1 "$RCH" run "$TMP/late.lua"
contains "$ERR" "$TMP/late.lua:6: attempt to index local 'missing'"
printf 'local x = \nreturn (\n' >"$TMP/syntax.lua"
expect_exit 1 "$RCH" run "$TMP/syntax.lua"
contains "$ERR" "$TMP/syntax.lua:"
expect_exit 1 "$RCH" run "$TMP/no-such-script.lua"
contains "$ERR" "no-such-script.lua"

# ---- The script's return value is the exit code; arguments arrive as `...`.
printf 'local a, b = ...\nassert(a == "x y" and b == "$(z)")\nreturn 3\n' >"$TMP/three.lua"
expect_exit 3 "$RCH" run "$TMP/three.lua" "x y" '$(z)'
printf 'return 0\n' >"$TMP/zero.lua"
expect_exit 0 "$RCH" run "$TMP/zero.lua"

# ---- fleet.upload: a path with spaces and $() is used literally; the sha256 matches; a
# relative path is under the login home (as fleet.exec runs), fleet.root(w) is the worker root.
head -c 100000 /dev/urandom >"$TMP/payload.bin"
PAYLOAD_SHA=$(sha_of "$TMP/payload.bin"); export PAYLOAD_SHA
cat >"$TMP/upload.lua" <<'EOF'
local fleet = require "rch.fleet"
local rch = require "rch"
local src, rel, abs = ...
local ws = fleet.workers("w1,w3")
local a = fleet.upload(ws, src, rel)
local b = fleet.upload(fleet.workers("w2"), src, abs)
local roots = {}
for _, w in ipairs(ws) do roots[w.id] = assert(fleet.root(w)) end
print(rch.json.encode({ rel = a, abs = b, roots = roots }))
EOF
REL="drop box/\$(touch $TOKEN-a) \`touch $TOKEN-b\`; x.bin"
ABS="$SHARED/abs dir/\$(id) x.bin"
expect_exit 0 "$RCH" run "$TMP/upload.lua" "$TMP/payload.bin" "$REL" "$ABS"
REL=$REL ABS=$ABS TBD=$TB python3 -c "$PY_PRELUDE
d = json.loads(sys.stdin.read())
for k in ('w1', 'w3'):
    r = d['rel'][k]
    assert r == {'path': os.environ['REL'], 'sha256': os.environ['PAYLOAD_SHA']}, r
    assert d['roots'][k] == os.environ['TBD'] + '/' + k + '/root', d['roots']
assert d['abs']['w2'] == {'path': os.environ['ABS'], 'sha256': os.environ['PAYLOAD_SHA']}, d['abs']
assert set(d['rel']) == {'w1', 'w3'} and set(d['abs']) == {'w2'}, d" <<<"$OUT" || fail "upload result: $OUT"
# w1 and w3 share the login home: one file there, none under their roots.
f="$WHOME/$REL"
[[ -f $f ]] || fail "no file at the literal path under the login home: $(find "$WHOME" -maxdepth 2)"
[[ $(sha_of "$f") == "$PAYLOAD_SHA" ]] || fail "wrong bytes at $f"
[[ -z $(find "$WHOME/drop box" -name '*.rch-part.*') ]] || fail "a temp file was left"
for k in 1 3; do [[ ! -e $(root_of "$k")/drop\ box ]] || fail "w$k: the relative upload went under the root"; done
[[ $(sha_of "$ABS") == "$PAYLOAD_SHA" ]] || fail "w2: wrong bytes at $ABS"
[[ ! -e $(root_of 2)/drop\ box ]] || fail "w2 got the relative upload"
[[ $REL == *'$(touch pwned-'* ]] || fail "REL lost its \$(): $REL"
for n in "$TOKEN-a" "$TOKEN-b"; do
  [[ -z $(find "$TB" "$SHARED" "$WHOME" -maxdepth 4 -name "$n" 2>/dev/null) ]] || fail "the remote path was run as shell code ($n)"
done

# ---- docs/lua-api.md's upload_run.lua, as printed there: upload then exec of the same relative
# path meet in the login home; arguments after the script (`-r`, `--`) reach it untouched.
sed -n '/^<!-- tested: upload_run.lua -->$/,/^```$/p' "$RCH_SOURCE_DIR/docs/lua-api.md" | sed '1,2d;$d' >"$TMP/upload_run.lua"
[[ -s $TMP/upload_run.lua ]] || fail "no upload_run.lua example in docs/lua-api.md"
printf '#!/bin/sh\necho "job $# $1 $2 $3 in $PWD"\n' >"$TMP/job.sh"
expect_exit 0 "$RCH" run "$TMP/upload_run.lua" "$TMP/job.sh" -r -- 'a b'
for k in 1 2 3 4; do
  grep -qxF "w$k"$'\t0\t'"job 3 -r -- a b in $WHOME"$'\t'"$(root_of "$k")" <<<"$OUT" || fail "upload_run.lua on w$k: $OUT"
done
[[ $(stat -c %a "$WHOME/.cache/rch-run/job.sh") == 755 ]] || fail "job.sh mode"
rm -rf "$WHOME/.cache/rch-run"

echo "fleet_run_test: ok"
