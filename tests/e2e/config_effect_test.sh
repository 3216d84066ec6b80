#!/usr/bin/env bash
# config.toml's fleet defaults take effect, flags win over them: [defaults]
# parallel and [canary] percent/wait in a deploy's dry run and real run
# (peak parallelism), and rollback's --parallel default.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

write_config "parallel = 2
[canary]
percent = 50
wait = 1
"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run --strategy canary
contains "$OUT" "Strategy: canary 50%, wait 1s, then parallel 2"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run --canary 25 --canary-wait 3 --parallel 3
contains "$OUT" "Strategy: canary 25%, wait 3s, then parallel 3"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run
contains "$OUT" "parallel 2"

deploy 0
json 'assert d["peak_parallelism"] == 2 and d["strategy"]["parallelism"] == 2, (d["peak_parallelism"], d["strategy"])'
deploy 0 --force --parallel 4
json 'assert d["strategy"]["parallelism"] == 4, d["strategy"]'
deploy 0 --force --strategy canary
json 'assert d["strategy"]["percent"] == 50 and d["strategy"]["wait_secs"] == 1, d["strategy"]'
echo "--- rch config check: effective settings with where each came from; broken files and scripts named"
expect_exit 0 "$RCH" config check --json
python3 - "$OUT" "$CFG" "$RCH_STATE_DIR" <<'EOF_PY' || fail "config check --json: $OUT"
import json, sys
d, cfg, state = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
s = {e["key"]: e for e in d["settings"]}
assert s["defaults.parallel"]["value"] == 2 and s["defaults.parallel"]["origin"] == cfg + "/config.toml:4", s["defaults.parallel"]
assert s["canary.percent"]["origin"] == cfg + "/config.toml:6" and s["defaults.command_timeout"]["origin"] == "default", s
p = {e["key"]: e for e in d["paths"]}
assert p["state_dir"] == {"key": "state_dir", "value": state, "origin": "env RCH_STATE_DIR"}, p
assert d["workers"] == 4 and d["schema_version"] == 1, d
EOF_PY
expect_exit 0 "$RCH" config check
contains "$OUT" "valid (4 workers)"
mkdir -p "$TMP/cc/strategies"
printf 'return { describe = function() return "x" end }\n' >"$TMP/cc/strategies/mine.lua"
expect_exit 2 "$RCH" config check --script-dir "$TMP/cc"
contains "$ERR" "$TMP/cc/strategies/mine.lua: strategy 'mine' has no run(d) function"
printf 'local x = \n' >"$TMP/cc/strategies/mine.lua"
expect_exit 2 "$RCH" config check --script-dir "$TMP/cc"
contains "$ERR" "$TMP/cc/strategies/mine.lua:2:"
printf 'percnt = 5\n' >>"$CFG/config.toml"
expect_exit 2 "$RCH" config check
contains "$ERR" "config.toml:8:1: unknown key 'percnt' in [canary] (did you mean 'percent'?)"
echo "PASS"
