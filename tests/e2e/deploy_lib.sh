# shellcheck shell=bash
# Helpers of the `rch fleet deploy` shell tests, sourced after lib.sh.
# Each test gets its own state, data (locks), home (artifacts) and config dir
# under $TMP; the workers are the shared testbed's, reset at start and exit.
: "${RCH_TESTBED_DIR:?}" "${RCH_WKR:?}" "${RCH_WKR_NEXT:?}" "${RCH_WKR_UNHEALTHY:?}" "${RCH_SOURCE_DIR:?}"
TB=$RCH_TESTBED_DIR
TESTBED=(bash "$RCH_SOURCE_DIR/scripts/testbed.sh")
NWORKERS=$(ls -d "$TB"/w*/ | wc -l)
((NWORKERS == 4)) || fail "the deploy tests need a 4-worker testbed, $TB has $NWORKERS"

OWN=$("$RCH_WKR" --version); OWN=${OWN#rch-wkr }
NEXT=$("$RCH_WKR_NEXT" --version); NEXT=${NEXT#rch-wkr }
[[ $OWN =~ ^[0-9]+\.[0-9]+\.[0-9]+$ && $NEXT =~ ^[0-9]+\.[0-9]+\.[0-9]+$ && $OWN != "$NEXT" ]] ||
  fail "unexpected agent versions: own '$OWN', next '$NEXT'"
[[ $("$RCH_WKR_UNHEALTHY" --version) == "rch-wkr $OWN" ]] || fail "the unhealthy agent must report $OWN"
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
OWN_SHA=$(sha_of "$RCH_WKR"); NEXT_SHA=$(sha_of "$RCH_WKR_NEXT"); UNHEALTHY_SHA=$(sha_of "$RCH_WKR_UNHEALTHY")
export OWN NEXT OWN_SHA NEXT_SHA UNHEALTHY_SHA TB RCH_WKR RCH_WKR_NEXT RCH_WKR_UNHEALTHY

CFG=$TMP/cfg
mkdir -p "$CFG" "$TMP/state" "$TMP/data" "$TMP/home" "$TMP/cache"
cp "$TB/workers.toml" "$TB/known_hosts" "$CFG/"
# An empty ssh config isolates the tests from ~/.ssh/config (and works where
# there is none).
: >"$CFG/ssh_config"
export RCH_CONFIG_DIR=$CFG RCH_STATE_DIR=$TMP/state RCH_DATA_DIR=$TMP/data RCH_HOME=$TMP/home \
  RCH_CACHE_DIR=$TMP/cache NO_COLOR=1
unset RCH_LOG_LEVEL

# write_config EXTRA: config.toml = the testbed defaults plus EXTRA (TOML text).
write_config() {
  printf '[defaults]\nknown_hosts = "%s"\nssh_config = "%s"\n%s' "$CFG/known_hosts" "$CFG/ssh_config" "${1:-}" \
    >"$CFG/config.toml"
}
write_config

# Global options placed before `fleet` (e.g. --script-dir DIR).
GLOBAL=()
# deploy WANT_EXIT ARGS…: rch fleet deploy --no-toolchain --json ARGS…, result in $OUT.
deploy() {
  local want=$1; shift
  expect_exit "$want" "$RCH" "${GLOBAL[@]}" fleet deploy --no-toolchain --json "$@"
}

PY_PRELUDE='
import json, sys, os, re, hashlib
def load(p): return [json.loads(l) for l in open(p) if l.strip()]
def audit(p=None): return load(p or os.environ["RCH_STATE_DIR"] + "/audit.jsonl")
'
# json 'PYTHON': runs PYTHON with d = the JSON in $OUT and st = worker_id -> worker result.
json() {
  python3 -c "$PY_PRELUDE
d = json.loads(sys.stdin.read())
st = {w['worker_id']: w for w in d['workers']} if isinstance(d, dict) and 'workers' in d else {}
$1" <<<"$OUT" || fail "JSON check failed:$1
--- stdout: $OUT
--- stderr: $ERR"
}
# py 'PYTHON': runs PYTHON (with the prelude) and fails the test when it raises.
py() { python3 -c "$PY_PRELUDE
$1" || fail "check failed:$1"; }

# stage VER BINARY: makes BINARY the artifact deployed for --version VER.
stage() { mkdir -p "$RCH_HOME/versions/v$1"; cp "$2" "$RCH_HOME/versions/v$1/rch-wkr"; }
unstage() { rm -rf "$RCH_HOME/versions/v$1"; }

root_of() { echo "$TB/w$1/root"; }
port_of() { awk -v id="w$1" '$1 == "id" {w = $3} $1 == "port" && w == "\"" id "\"" {print $3}' "$TB/workers.toml"; }
# on K CMD…: runs CMD on worker K over ssh (OpenSSH's client) with the testbed key.
on() {
  local k=$1; shift
  ssh -q -o BatchMode=yes -o UserKnownHostsFile="$TB/known_hosts" -i "$TB/client/id_ed25519" -p "$(port_of "$k")" \
    rchtest@127.0.0.1 "$@"
}
# snap K: worker K's root (mode, owner), every entry in it (type, size, mode, owner, mtime, link) and every
# file's sha256, but controller.lock: every real run, blocked or not, takes the controller lease there first
# (which is also why the root's own mtime is left out: its entries are listed).
snap() {
  (cd "$(root_of "$1")" && stat -c '.|%a|%U' . &&
    find . -mindepth 1 -path ./controller.lock -prune -o -printf '%p|%y|%s|%m|%u|%T@|%l\n' | LC_ALL=C sort &&
    find . -path ./controller.lock -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
}
snap_all() { local k; for k in 1 2 3 4; do snap "$k" >"$TMP/snap.$1.$k"; done; }
# same_as LABEL K…: worker K's root is byte-identical to snapshot LABEL.
same_as() {
  local label=$1 k; shift
  for k in "$@"; do
    snap "$k" | cmp -s - "$TMP/snap.$label.$k" ||
      fail "w$k changed since snapshot '$label': $(snap "$k" | diff "$TMP/snap.$label.$k" - || true)"
  done
}

# installed K VER SHA [DEPLOYMENT_ID]: worker K runs VER from the layout the spec describes.
installed() {
  local k=$1 ver=$2 sha=$3 dep=${4:-} root
  root=$(root_of "$k")
  [[ $(readlink "$root/current") == "versions/v$ver" ]] || fail "w$k: current -> $(readlink "$root/current"), want versions/v$ver"
  [[ $(readlink "$root/bin/rch-wkr") == "../current/rch-wkr" ]] || fail "w$k: bin/rch-wkr -> $(readlink "$root/bin/rch-wkr")"
  [[ $("$root/bin/rch-wkr" --version) == "rch-wkr $ver" ]] || fail "w$k: bin/rch-wkr --version is not $ver"
  [[ $(sha_of "$root/versions/v$ver/rch-wkr") == "$sha" ]] || fail "w$k: versions/v$ver/rch-wkr has the wrong bytes"
  [[ $(stat -c %a "$root/versions/v$ver/rch-wkr") == 755 ]] || fail "w$k: rch-wkr is not mode 755"
  # manifest.json, checked field by field in bash (a python3 per call is slow on a busy machine).
  local m s='[[:space:]]*' want any_id='[0-9a-f-]{36}'
  m=$(<"$root/versions/v$ver/manifest.json")
  for want in "\"version\"$s:$s\"${ver//./\\.}\"" "\"sha256\"$s:$s\"$sha\"" \
    "\"deployment_id\"$s:$s\"${dep:-$any_id}\"" "\"installed_at\"$s:$s\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z\""; do
    [[ $m =~ $want ]] || fail "w$k: manifest.json lacks /$want/: $m"
  done
}
# no_agent K: worker K has no current link and no bin/rch-wkr.
no_agent() {
  local root; root=$(root_of "$1")
  [[ ! -e $root/current && ! -L $root/current ]] || fail "w$1: current exists: $(ls -la "$root")"
  [[ ! -e $root/bin/rch-wkr && ! -L $root/bin/rch-wkr ]] || fail "w$1: bin/rch-wkr exists"
}
# versions_of K: the version dirs on worker K, space-separated.
versions_of() { (cd "$(root_of "$1")/versions" 2>/dev/null && ls -1 | tr '\n' ' ' | sed 's/ $//'); }

# wait_for FILE [SECONDS]: waits until FILE exists.
wait_for() {
  local i
  for ((i = 0; i < ${2:-20} * 20; i++)); do
    [[ -e $1 ]] && return 0
    sleep 0.05
  done
  fail "timed out waiting for $1"
}

# wait_hook DIR: DIR/hooks/pre_install.lua announces each worker in $TEST_MARKS
# (a file named after it) and waits for $TEST_MARKS/go (up to 30 s), so a test
# can hold a deploy between transfer and install (with --script-dir DIR).
wait_hook() {
  mkdir -p "$1/hooks" "$TMP/marks"
  cat >"$1/hooks/pre_install.lua" <<'EOF_LUA'
local rch = require "rch"
return function(ctx)
  local marks = os.getenv("TEST_MARKS")
  io.open(marks .. "/" .. ctx.worker.id, "w"):close()
  for _ = 1, 600 do
    local f = io.open(marks .. "/go")
    if f then f:close() return true end
    rch.sleep(0.05)
  end
  return false, "test hook: no go-ahead"
end
EOF_LUA
  export TEST_MARKS=$TMP/marks
}
# deployment_dirs: the ids under deployments/, sorted (none yet: nothing).
deployment_dirs() { { ls "$RCH_STATE_DIR/deployments" 2>/dev/null || true; } | LC_ALL=C sort; }

BACKGROUND=()
deploy_cleanup() {
  local p
  for p in "${BACKGROUND[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  reset_workers
  rm -rf "$TMP"
}
trap deploy_cleanup EXIT
reset_workers
