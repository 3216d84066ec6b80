#!/usr/bin/env bash
# Worker data and odd bytes against the real sshd testbed: a hook veto whose
# reason is Latin-1 (audit verify, history show, --json stay readable; the
# records keep the bytes as {"$b64"}), --resume reading a journal line whose
# bytes are not UTF-8 (a Latin-1 version link), and terminal escapes (title,
# clear screen, OSC 52 clipboard) from a link target, a fake agent's health,
# a hook's worker output and workers.toml: shown escaped, never raw.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

ESCAPES=$'\e]0;x\a\e[2J\e]52;c;Zm9v\a'
SHOWN='\x1b]0;x\x07\x1b[2J\x1b]52;c;Zm9v\x07'  # how the sanitiser prints ESCAPES
FFFD=$'\xef\xbf\xbd'

# clean FILE…: strict UTF-8, no raw C0 (but newline and tab), DEL or C1 control.
clean() {
  python3 - "$@" <<'EOF' || fail "raw control bytes or invalid UTF-8 reached the output"
import sys
for p in sys.argv[1:]:
    b = open(p, "rb").read()
    try:
        t = b.decode("utf-8")
    except UnicodeDecodeError as e:
        sys.exit(f"{p}: not UTF-8 ({e}): {b!r}")
    for ch in t:
        if (ord(ch) < 0x20 and ch not in "\n\t") or 0x7F <= ord(ch) <= 0x9F:
            sys.exit(f"{p}: raw U+{ord(ch):04X} in: {t!r}")
EOF
}
# strict_json FILE PYTHON: FILE is UTF-8 JSON; runs PYTHON with d = the document.
strict_json() {
  python3 -c "import json, sys, os
d = json.loads(open(sys.argv[1], 'rb').read().decode('utf-8'))
$2" "$1" || fail "JSON check on $1 failed:$2
--- $(cat "$1")"
}
# records_hold BYTES_PY FILE…: a {"\$b64"} object in a line of FILE decodes to bytes containing BYTES_PY.
records_hold() {
  local want=$1; shift
  python3 - "$want" "$@" <<'EOF' || fail "no {\"\$b64\"} record holds the exact bytes $want in $*"
import ast, base64, json, sys
want = ast.literal_eval(sys.argv[1])
def walk(v):
    if isinstance(v, dict):
        if list(v) == ["$b64"]:
            yield base64.b64decode(v["$b64"], validate=True)
        for x in v.values(): yield from walk(x)
    elif isinstance(v, list):
        for x in v: yield from walk(x)
found = False
for p in sys.argv[2:]:
    text = open(p, "rb").read().decode("utf-8")  # strict: the records are UTF-8
    for line in text.splitlines():
        if line.strip() and any(want in b for b in walk(json.loads(line))): found = True
sys.exit(0 if found else 1)
EOF
}

# ---- A post_verify veto with a Latin-1 reason ("\xe9chec") and escapes rolls w2 back.
deploy 0
stage "$NEXT" "$RCH_WKR_NEXT"
mkdir -p "$TMP/sd_veto/hooks"
cat >"$TMP/sd_veto/hooks/post_verify.lua" <<'EOF'
return function(ctx)
  if ctx.worker.id == "w2" then return false, "\233chec \27]0;x\7\27[2J\27]52;c;Zm9v\7" end
  return true
end
EOF
GLOBAL=(--script-dir "$TMP/sd_veto")
deploy 1 --version "$NEXT"
GLOBAL=()
clean "$TMP/out" "$TMP/err"
DEP=$(json 'print(d["id"])')
strict_json "$TMP/out" '
w = {w["worker_id"]: w for w in d["workers"]}["w2"]
assert w["status"] == "RolledBack", w
assert "\ufffdchec \x1b]0;x\x07\x1b[2J" in w["error"], w["error"]'
installed 2 "$OWN" "$OWN_SHA"
# The durable records keep the exact bytes, and every reader of them still works.
records_hold 'b"\xe9chec \x1b]0;x"' "$RCH_STATE_DIR/audit.jsonl"
records_hold 'b"\xe9chec \x1b]0;x"' "$RCH_STATE_DIR/deployments/$DEP/journal.jsonl"
expect_exit 0 "$RCH" fleet audit verify "$RCH_STATE_DIR/audit.jsonl"
contains "$OUT" "hash chain intact"
expect_exit 0 "$RCH" fleet history show "$DEP"
clean "$TMP/out" "$TMP/err"
contains "$OUT" "w2"
contains "$OUT" "${FFFD}chec \\x1b]0;x\\x07\\x1b[2J"
expect_exit 0 "$RCH" fleet history show "$DEP" --json
clean "$TMP/out"
strict_json "$TMP/out" '
w = {w["worker_id"]: w for w in d["workers"]}["w2"]
assert "hook post_verify vetoed: \ufffdchec \x1b]0;x" in w["error"], w["error"]'
expect_exit 0 "$RCH" fleet history --json
DEP=$DEP strict_json "$TMP/out" 'assert d["deployments"][0]["id"] == os.environ["DEP"], d'

# ---- --resume reads a journal line whose bytes are not UTF-8: w1 runs OWN from versions/v\xe9
# (current -> versions/v\xe9), the deploy of NEXT is killed after install, and the resumed run's
# rollback must go back to that exact link, which only the journal remembers.
reset_workers
deploy 0 --worker w1
r1=$(root_of 1)
mv "$r1/versions/v$OWN" "$r1/versions/v"$'\xe9'
ln -sfn "versions/v"$'\xe9' "$r1/current"
chown -h --reference="$r1" "$r1/current"
[[ $("$r1/bin/rch-wkr" --version) == "rch-wkr $OWN" ]] || fail "w1 does not run OWN from versions/v\\xe9"
mkdir -p "$TMP/sd_hold/hooks" "$TMP/marks"
cat >"$TMP/sd_hold/hooks/post_install.lua" <<'EOF'
-- Test hook: say the install is done, then wait (up to 30 s) to be killed.
local rch = require "rch"
return function(ctx)
  io.open(os.getenv("TEST_MARKS") .. "/" .. ctx.worker.id .. ".installed", "w"):close()
  rch.sleep(30)
  return true
end
EOF
export TEST_MARKS=$TMP/marks
"$RCH" --script-dir "$TMP/sd_hold" fleet deploy --no-toolchain --json --worker w1 --version "$NEXT" \
  >"$TMP/killed.out" 2>"$TMP/killed.err" &
victim=$!
BACKGROUND+=("$victim")
wait_for "$TMP/marks/w1.installed" 30
kill -9 "$victim"
set +e; wait "$victim"; set -e
[[ $(readlink "$r1/current") == "versions/v$NEXT" ]] || fail "w1 was not switched to NEXT before the kill"
KILLED=$(ls -t "$RCH_STATE_DIR/deployments" | head -n 1)
records_hold 'b"versions/v\xe9"' "$RCH_STATE_DIR/deployments/$KILLED/journal.jsonl"
mkdir -p "$TMP/sd_veto_w1/hooks"
cat >"$TMP/sd_veto_w1/hooks/post_verify.lua" <<'EOF'
return function() return false, "\233chec" end
EOF
GLOBAL=(--script-dir "$TMP/sd_veto_w1")
deploy 1 --resume
GLOBAL=()
clean "$TMP/out" "$TMP/err"
KILLED=$KILLED strict_json "$TMP/out" '
assert d["id"] == os.environ["KILLED"] and d["resumed"] is True, d
w = d["workers"][0]
assert w["worker_id"] == "w1" and w["status"] == "RolledBack", w'
[[ $(readlink "$r1/current") == "versions/v"$'\xe9' ]] ||
  fail "the resumed rollback lost the journal's previous link: current -> $(readlink "$r1/current" | od -c | head -n 2)"
[[ $("$r1/bin/rch-wkr" --version) == "rch-wkr $OWN" ]] || fail "w1 does not run OWN after the resumed rollback"
expect_exit 0 "$RCH" fleet audit verify "$RCH_STATE_DIR/audit.jsonl"

# ---- Escapes and invalid UTF-8 from workers: a link target (w3), a fake agent's health (w4).
reset_workers
deploy 0
r3=$(root_of 3) r4=$(root_of 4)
ln -sfn "$ESCAPES"$'\xff\xfe' "$r3/current"
chown -h --reference="$r3" "$r3/current"
cat >"$r4/versions/v$OWN/rch-wkr" <<EOF
#!/bin/sh
# A hostile agent: its health report carries terminal escapes.
case "\$1" in
  --version) echo "rch-wkr $OWN" ;;
  health) printf '%s\n' '{"ok":false,"version":"$OWN","error":"\\u001b]0;x\\u0007\\u001b[2J\\u001b]52;c;Zm9v\\u0007\\u009b"}' ;;
esac
EOF
expect_exit 1 "$RCH" fleet verify
clean "$TMP/out" "$TMP/err"
contains "$OUT" "current -> $SHOWN$FFFD$FFFD is not a version directory"
contains "$OUT" "unhealthy: $SHOWN\\x9b"
expect_exit 1 "$RCH" fleet verify --json
clean "$TMP/out"
strict_json "$TMP/out" '
f = {w["worker_id"]: " | ".join(w["findings"]) for w in d["workers"]}
assert "current -> \x1b]0;x\x07\x1b[2J\x1b]52;c;Zm9v\x07\ufffd\ufffd is not" in f["w3"], f["w3"]
assert "unhealthy: \x1b]0;x" in f["w4"], f["w4"]'

# The dry run's issue lines, through a site preflight hook that quotes the worker's link.
mkdir -p "$TMP/sd_dry/hooks"
cat >"$TMP/sd_dry/hooks/preflight.lua" <<'EOF'
return function(ctx, builtin)
  local issues = builtin(ctx)
  if ctx.facts.current_link and not ctx.facts.current_link:match("^versions/v[%w.%-+]+$") then
    issues[#issues + 1] = { severity = "warning", check = "current_link",
      message = "current -> " .. ctx.facts.current_link, remediation = "inspect " .. ctx.facts.current_link }
  end
  return issues
end
EOF
expect_exit 0 "$RCH" --script-dir "$TMP/sd_dry" fleet deploy --dry-run --no-toolchain --version "$NEXT"
clean "$TMP/out" "$TMP/err"
contains "$OUT" "[WARN] w3: current_link: current -> $SHOWN$FFFD$FFFD"
expect_exit 0 "$RCH" --script-dir "$TMP/sd_dry" fleet deploy --dry-run --no-toolchain --version "$NEXT" --json
clean "$TMP/out"
strict_json "$TMP/out" '
issues = [i["issue"] for i in d["potential_issues"] if i["worker_id"] == "w3"]
assert any("\x1b]0;x" in i and "\ufffd" in i for i in issues), issues'

# A deploy's piped output and warning log: a hook quotes what a worker printed.
reset_workers
deploy 0
printf '%s\xff\n' "$ESCAPES" >"$(root_of 3)/evil.txt"
mkdir -p "$TMP/sd_evil/hooks"
cat >"$TMP/sd_evil/hooks/post_verify.lua" <<'EOF'
local rch = require "rch"
return function(ctx)
  if ctx.worker.id ~= "w3" then return true end
  local r = assert(ctx.exec({ "cat", ctx.root .. "/evil.txt" }))
  rch.log.warn("w3 says: " .. r.out)
  print("w3 printed: " .. r.out)
  return false, "w3 says: " .. r.out
end
EOF
expect_exit 1 "$RCH" --script-dir "$TMP/sd_evil" fleet deploy --no-toolchain --version "$NEXT"
clean "$TMP/out" "$TMP/err"
contains "$OUT" "w3 rolled back: post_verify: hook post_verify vetoed: w3 says: $SHOWN$FFFD\\x0a"
contains "$OUT" "w3 printed: $SHOWN$FFFD"
contains "$ERR" "w3 says: $SHOWN$FFFD"

# ---- Config values: an id or a host with an escape is refused and echoed escaped.
cp "$CFG/workers.toml" "$TMP/workers.good"
sed -i '0,/^id = "w1"/s//id = "w1\\u001b]0;x\\u0007"/' "$CFG/workers.toml"
expect_exit 2 "$RCH" fleet status
clean "$TMP/out" "$TMP/err"
contains "$ERR" "invalid worker id 'w1\\x1b]0;x\\x07'"
cp "$TMP/workers.good" "$CFG/workers.toml"
sed -i '0,/^host = "127.0.0.1"/s//host = "127.0.0.1\\u001b]0;x\\u0007"/' "$CFG/workers.toml"
expect_exit 2 "$RCH" fleet status
clean "$TMP/out" "$TMP/err"
contains "$ERR" "invalid host '127.0.0.1\\x1b]0;x\\x07'"
cp "$TMP/workers.good" "$CFG/workers.toml"
echo "PASS"
