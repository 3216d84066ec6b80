#!/usr/bin/env bash
# Every hook a run may call is loaded before any worker is touched: a hook
# with a syntax error, one that raises while loading and one that returns no
# function stop the dry run and the real run alike with file:line and exit 2,
# and the workers stay byte-identical. Global flags (--script-dir, -v) are
# accepted after the subcommand too.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

snap_all before
mkdir -p "$TMP/syntax/hooks" "$TMP/raise/hooks" "$TMP/nofn/hooks"
printf 'return function(ctx)\n  if ctx.worker then\n    return true\nend\n' >"$TMP/syntax/hooks/post_verify.lua"
printf 'local x = nil\nlocal y = x.field\nreturn function() return true end\n' >"$TMP/raise/hooks/preflight.lua"
printf 'return 42\n' >"$TMP/nofn/hooks/canary_health.lua"

for mode in --dry-run ""; do
  expect_exit 2 "$RCH" fleet deploy --no-toolchain $mode --script-dir "$TMP/syntax"
  contains "$ERR" "$TMP/syntax/hooks/post_verify.lua:5:"
  contains "$ERR" "'end' expected"
  expect_exit 2 "$RCH" fleet deploy --no-toolchain $mode --script-dir "$TMP/raise"
  contains "$ERR" "$TMP/raise/hooks/preflight.lua:2: attempt to index local 'x'"
  expect_exit 2 "$RCH" fleet deploy --no-toolchain $mode --script-dir "$TMP/nofn"
  contains "$ERR" "$TMP/nofn/hooks/canary_health.lua: hook 'canary_health' must return a function(ctx, builtin), got number"
done
same_as before 1 2 3 4
[[ ! -e $RCH_STATE_DIR/deployments ]] || fail "a refused run created a deployment: $(ls "$RCH_STATE_DIR/deployments")"

echo "--- a preflight hook that raises while running blocks its worker, with file:line, in both modes"
mkdir -p "$TMP/runraise/hooks"
printf 'return function(ctx)\n  if ctx.worker.id == "w2" then error("site check broke") end\n  return {}\nend\n' \
  >"$TMP/runraise/hooks/preflight.lua"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --worker w1,w2 --script-dir "$TMP/runraise" --dry-run --json
json '
p = {x["worker_id"]: x for x in d["predictions"]}
assert p["w2"]["action"] == "Blocked" and p["w1"]["action"] != "Blocked", p
assert "hooks/preflight.lua:2: site check broke" in p["w2"]["preflight_issues"][0], p["w2"]'

expect_exit 1 "$RCH" fleet deploy --no-toolchain --worker w1,w2 --script-dir "$TMP/runraise" --json
json '
assert st["w1"]["status"] == "Completed", st["w1"]
assert st["w2"]["status"] == "Failed" and st["w2"]["error"].startswith("preflight: hook preflight (") \
  and "hooks/preflight.lua:2: site check broke" in st["w2"]["error"], st["w2"]'

reset_workers

echo "--- global flags after the subcommand"
mkdir -p "$TMP/ok/hooks"
printf 'return function(ctx) io.open(os.getenv("TMP") .. "/hooked", "w"):close() return true end\n' \
  >"$TMP/ok/hooks/post_install.lua"
TMP=$TMP expect_exit 0 "$RCH" fleet deploy --no-toolchain --worker w1 --script-dir "$TMP/ok" -v
[[ -e $TMP/hooked ]] || fail "--script-dir after the subcommand was not used"
echo "PASS"
