#!/usr/bin/env bash
# The local directories rch writes into, against the real sshd testbed:
# under `umask 000` a deploy's state, deployment and lock dirs come out 0700
# and rchd's root 0755, its daemon/, state and leases 0700, socket 0600 (README's table);
# a state, data or rchd dir that another local user could write (a group- or
# world-writable parent, a directory owned by someone else under a sticky
# one) is refused with the path and the fix, before any worker is touched and
# without creating anything under it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
# shellcheck source=tests/e2e/rchd_lib.sh
source "$(dirname "$0")/rchd_lib.sh"
: "${RCHD:?}"

mode_is() {
  local want=$1 p
  shift
  for p in "$@"; do [[ $(stat -c %a "$p") == "$want" ]] || fail "$p has mode $(stat -c %a "$p"), want $want"; done
}

echo "--- umask 000: a deploy's state, deployment and lock dirs are 0700"
U=$TMP/umask
umask 000
RCH_STATE_DIR=$U/state RCH_DATA_DIR=$U/data deploy 0 --worker w1
umask 022
id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$OUT")
mode_is 700 "$U" "$U/state" "$U/state/deployments" "$U/state/deployments/$id" "$U/data"
installed 1 "$OWN" "$OWN_SHA"

echo "--- umask 000: rchd's root 0755, daemon/ 0700, socket 0600"
(umask 000 && exec "$RCHD" run --root "$U/rchd") || fail "rchd run failed"
trap 'rchd_request "$U/rchd/rchd.sock" "{\"cmd\":\"shutdown\",\"force\":true}" >/dev/null 2>&1 || true; deploy_cleanup' EXIT
mode_is 755 "$U/rchd"
mode_is 700 "$U/rchd/daemon"
mode_is 600 "$U/rchd/rchd.sock"
# A build takes a lease: the agent's state and leases dirs are private too.
reply=$(rchd_request "$U/rchd/rchd.sock" '{"cmd":"build","argv":["true"],"cwd":"/"}')
[[ $reply == *'"ok":true'* ]] || fail "rchd build: $reply"
mode_is 700 "$U/rchd/daemon/state" "$U/rchd/daemon/state/leases"
rchd_request "$U/rchd/rchd.sock" '{"cmd":"shutdown","force":true}' >/dev/null

reset_workers
snap_all before

echo "--- a state dir under a group-writable parent is refused"
mkdir -m 775 "$TMP/group"
RCH_STATE_DIR=$TMP/group/state deploy 1
contains "$ERR" "refusing to use $TMP/group/state: $TMP/group is writable by its group (mode 0775)"
contains "$ERR" "fix: chmod go-w $TMP/group"
[[ ! -e $TMP/group/state ]] || fail "the state dir was created under the untrusted parent"
same_as before 1 2 3 4

echo "--- a state dir owned by another user, under a sticky world-writable parent, is refused"
mkdir -m 1777 "$TMP/sticky"
mkdir "$TMP/sticky/state"
chown nobody "$TMP/sticky/state"
RCH_STATE_DIR=$TMP/sticky/state deploy 1
contains "$ERR" "refusing to use $TMP/sticky/state: $TMP/sticky/state is owned by nobody, not by $(id -un)"
same_as before 1 2 3 4
# …while a directory of our own there is fine (like ~/.local/state under /tmp).
mkdir "$TMP/sticky/mine"
RCH_STATE_DIR=$TMP/sticky/mine/state deploy 0 --worker w2
installed 2 "$OWN" "$OWN_SHA"
reset_workers

echo "--- a world-writable data dir (fleet.lock) is refused, not reported as a held lock"
mkdir -m 777 "$TMP/world"
RCH_DATA_DIR=$TMP/world deploy 1
contains "$ERR" "refusing to use $TMP/world: $TMP/world is writable by others (mode 0777)"
[[ $ERR != *"another fleet operation is running"* ]] || fail "a refused lock dir reported as a held lock: $ERR"
[[ ! -e $TMP/world/fleet.lock ]] || fail "fleet.lock was created in the untrusted dir"

echo "--- rchd refuses a root under a group-writable parent"
expect_exit 1 "$RCHD" run --root "$TMP/group/rchd" --foreground
contains "$ERR" "$TMP/group is writable by its group (mode 0775)"
[[ ! -e $TMP/group/rchd ]] || fail "rchd created its root under the untrusted parent"
echo "PASS"
