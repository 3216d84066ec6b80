#!/usr/bin/env bash
# The CLI surface: versions, --help with the spec's flags and defaults,
# commands not yet available, and configuration errors with file:line:col.
source "$(dirname "$0")/lib.sh"
: "${RCH_WKR:?}" "${RCHD:?}"

expect_exit 0 "$RCH" --version;     [[ $OUT =~ ^rch\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "rch --version: $OUT"
expect_exit 0 "$RCH_WKR" --version; [[ $OUT =~ ^rch-wkr\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "rch-wkr --version: $OUT"
expect_exit 0 "$RCHD" --version;    [[ $OUT =~ ^rchd\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "rchd --version: $OUT"
v=${OUT#rchd }
expect_exit 0 "$RCH" --version; [[ $OUT == "rch $v" ]] || fail "one version for all binaries"

expect_exit 0 "$RCH" --help
for word in fleet update scripts run --script-dir --verbose; do contains "$OUT" "$word"; done

expect_exit 0 "$RCH" fleet deploy --help
for flag in --worker --parallel --canary --canary-wait --no-toolchain --force --verify --drain-first \
            --drain-timeout --dry-run --resume --version --json --audit-log; do
  contains "$OUT" "$flag"
done
contains "$OUT" "(default: [defaults] parallel, 4)"
contains "$OUT" "(default: [canary] wait, 60)"; contains "$OUT" "--exclude"
grep -qE -- '--drain-timeout [^ ]*=120( |$)' <<<"$OUT" || fail "--drain-timeout default 120 not shown"

expect_exit 0 "$RCH" update --help
for flag in --check --version --channel --fleet --rollback --verify --yes --dry-run --no-restart \
            --drain-timeout --force --json; do
  contains "$OUT" "$flag"
done
grep -qE -- '--channel [^ ]*=stable( |$)' <<<"$OUT" || fail "--channel default not shown"
grep -qE -- '--drain-timeout [^ ]*=60( |$)' <<<"$OUT" || fail "update --drain-timeout default 60 not shown"

for sub in rollback status verify drain history; do
  expect_exit 0 "$RCH" fleet "$sub" --help
done
expect_exit 0 "$RCH" fleet rollback --help; contains "$OUT" --to-version
expect_exit 0 "$RCH" fleet history --help; grep -qE -- '--limit [^ ]*=10( |$)' <<<"$OUT" || fail "--limit default"

# Usage errors exit 2 and name the flag.
expect_exit 2 "$RCH" fleet deploy --parallel 0;      contains "$ERR" "--parallel"
expect_exit 2 "$RCH" fleet deploy --canary 101;      contains "$ERR" "--canary"
expect_exit 2 "$RCH" fleet deploy --no-such-flag;    contains "$ERR" "--no-such-flag"
expect_exit 2 "$RCH" update --channel nightlyy;      contains "$ERR" "--channel"
expect_exit 2 "$RCH"


# Configuration errors: file:line:col, exit 2, state untouched.
export RCH_CONFIG_DIR="$TMP/config" RCH_STATE_DIR="$TMP/state" RCH_HOME="$TMP/home"
mkdir -p "$RCH_CONFIG_DIR"
cat >"$RCH_CONFIG_DIR/workers.toml" <<'TOML'
[[workers]]
id = "w1"
hots = "127.0.0.1"
TOML
expect_exit 2 "$RCH" fleet status
contains "$ERR" "$RCH_CONFIG_DIR/workers.toml:3:1:"
contains "$ERR" "unknown key 'hots'"
contains "$ERR" "did you mean 'host'?"
for cmd in "fleet deploy" "fleet deploy --dry-run" "fleet rollback" "fleet verify" "fleet drain"; do
  # shellcheck disable=SC2086
  expect_exit 2 "$RCH" $cmd
  contains "$ERR" "workers.toml:3:1: unknown key 'hots'"
done

cat >"$RCH_CONFIG_DIR/workers.toml" <<'TOML'
[[workers]]
id = "w1"
host = "a"

[[workers]]
id = "w1"
host = "b"
TOML
expect_exit 2 "$RCH" fleet status
contains "$ERR" "workers.toml:6:"
contains "$ERR" "duplicate worker id 'w1'"

printf '[[workers]]\nid = "w1"\nhost = "a\n' >"$RCH_CONFIG_DIR/workers.toml"
expect_exit 2 "$RCH" fleet status
grep -qE 'workers\.toml:3:[0-9]+:' <<<"$ERR" || fail "bad TOML line not located: $ERR"

printf '[[workers]]\nid = "a b"\nhost = "h"\n' >"$RCH_CONFIG_DIR/workers.toml"
expect_exit 2 "$RCH" fleet status; contains "$ERR" "invalid worker id 'a b'"

printf '[[workers]]\nid = "w1"\nhost = ""\n' >"$RCH_CONFIG_DIR/workers.toml"
expect_exit 2 "$RCH" fleet status; contains "$ERR" "empty host"

printf '[defaults]\nparalel = 3\n' >"$RCH_CONFIG_DIR/config.toml"
printf '[[workers]]\nid = "w1"\nhost = "h"\n' >"$RCH_CONFIG_DIR/workers.toml"
expect_exit 2 "$RCH" fleet status
contains "$ERR" "config.toml:2:1:"; contains "$ERR" "did you mean 'parallel'?"
rm "$RCH_CONFIG_DIR/config.toml"

expect_exit 2 "$RCH" fleet status --worker nope; contains "$ERR" "--worker 'nope' matches no worker; nearest: "

[[ ! -e $RCH_STATE_DIR && ! -e $RCH_HOME ]] || fail "a failing command wrote state"

# Scripts: list shows where each resolves; a --script-dir file overrides the built-in.
expect_exit 0 "$RCH" scripts list
grep -qE '^rch/init\.lua +builtin$' <<<"$OUT" || fail "scripts list: $OUT"
mkdir -p "$TMP/scripts/rch"
printf -- '-- site copy\nreturn {}\n' >"$TMP/scripts/rch/ui.lua"
expect_exit 0 "$RCH" --script-dir "$TMP/scripts" scripts list
grep -qE "^rch/ui\.lua +$TMP/scripts/rch/ui\.lua +\(overrides builtin\)$" <<<"$OUT" || fail "override not listed: $OUT"
expect_exit 0 "$RCH" --script-dir "$TMP/scripts" scripts show rch/ui; [[ $OUT == "-- site copy"* ]] || fail "show: $OUT"
expect_exit 0 "$RCH" scripts show rch/ui.lua; contains "$OUT" "NO_COLOR"
expect_exit 2 "$RCH" scripts show strategies/nope; contains "$ERR" "no script 'strategies/nope'"
expect_exit 2 "$RCH" --script-dir "$TMP/missing" scripts list; contains "$ERR" "--script-dir"

# A failing Lua command names file:line; -v adds the traceback.
mkdir -p "$TMP/broken/rch/commands"
printf 'local M = {}\nfunction M.run() error("exploded") end\nreturn M\n' >"$TMP/broken/rch/commands/status.lua"
expect_exit 1 "$RCH" --script-dir "$TMP/broken" fleet status
contains "$ERR" "$TMP/broken/rch/commands/status.lua:2: exploded"
[[ $ERR != *"stack traceback"* ]] || fail "traceback without -v"
expect_exit 1 "$RCH" -v --script-dir "$TMP/broken" fleet status
contains "$ERR" "stack traceback"
# Colour only on a TTY, and never with NO_COLOR set (script(1) gives rch a pty).
mkdir -p "$TMP/mock"
printf '[[workers]]\nid = "m1"\nhost = "sim"\n' >"$TMP/mock/workers.toml"
colour_runs() {
  env RCH_MOCK_SSH=1 RCH_CONFIG_DIR="$TMP/mock" RCH_STATE_DIR="$TMP/mockstate" "$@" \
    script -qec "$RCH fleet status" /dev/null | grep -c $'\e\[' || true
}
[[ $(colour_runs env -u NO_COLOR) -gt 0 ]] || fail "no colour on a TTY"
[[ $(colour_runs env NO_COLOR=1) == 0 ]] || fail "colour despite NO_COLOR"
[[ $(RCH_MOCK_SSH=1 RCH_CONFIG_DIR="$TMP/mock" RCH_STATE_DIR="$TMP/mockstate" "$RCH" fleet status | grep -c $'\e\[' || true) == 0 ]] ||
  fail "colour when piped"
echo "cli_test: ok"
