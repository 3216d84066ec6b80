#!/usr/bin/env bash
# Against the real sshd testbed: `deploy --force` repairs an installed binary
# damaged in place (same size and mtime) when the artifact is the build its
# manifest names, and still refuses another build under the same version;
# workers keep [deploy] keep_versions version directories, never dropping
# the current or the previous one.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
r1=$(root_of 1)

# ---- --force repairs the very build the manifest names.
deploy 0 --worker w1
installed 1 "$OWN" "$OWN_SHA"
f=${r1:?}/versions/v$OWN/rch-wkr
cp -p "$f" "$TMP/ref"
off=$(grep -obUa 'GCC: (' "$f" | head -n 1 | cut -d: -f1)
[[ -n $off ]] || fail "no .comment in $f"
printf 'H' | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
touch -r "$TMP/ref" "$f"
[[ $(sha_of "$f") != "$OWN_SHA" && $(stat -c %s "$f") == $(stat -c %s "$RCH_WKR") ]] || fail "damage not as intended"
expect_exit 1 "$RCH" fleet verify --worker w1
contains "$OUT" "versions/v$OWN/rch-wkr was modified"
deploy 0 --worker w1 --force
json '
w = st["w1"]
assert w["status"] == "Completed", w
tr = [s for s in w["steps"] if s["name"] == "transfer"][0]
assert tr["output"] != "already present, sha256 matches", tr'
cmp -s "$f" "$RCH_WKR" || fail "--force did not restore the artifact's bytes"
installed 1 "$OWN" "$OWN_SHA"
expect_exit 0 "$RCH" fleet verify --worker w1
# Another build under the same version stays refused, --force or not.
stage "$OWN" "$RCH_WKR_UNHEALTHY"
snap 1 >"$TMP/snap.other.1"
deploy 1 --worker w1 --force
json 'assert st["w1"]["error"].startswith("preflight: same_version: "), st["w1"]'
same_as other 1
unstage "$OWN"

# ---- Pruning: older versions installed by hand (manifest or directory mtime
# gives their age), then the next version: 3 kept (the default).
owner=$(stat -c %U "$r1")
mkv() { # VER DATE [manifest]
  mkdir -p "$r1/versions/v$1"
  cp "$RCH_WKR" "$r1/versions/v$1/rch-wkr"
  if [[ ${3:-} == manifest ]]; then echo '{}' >"$r1/versions/v$1/manifest.json"; touch -d "$2" "$r1/versions/v$1/manifest.json"; fi
  chown -R "$owner:" "$r1/versions/v$1"
  touch -d "$2" "$r1/versions/v$1"
}
mkv 0.0.1 2020-01-01 manifest
mkv 0.0.2 2020-01-02
mkv 0.0.3 2020-01-03 manifest
# The version now running is made the oldest: it is kept as the previous one anyway.
touch -d 2019-01-01 "$r1/versions/v$OWN/manifest.json"
stage "$NEXT" "$RCH_WKR_NEXT"
RCH_LOG_LEVEL=info deploy 0 --worker w1 --version "$NEXT"
installed 1 "$NEXT" "$NEXT_SHA"
want=$(printf '%s\n' "v$NEXT" "v$OWN" v0.0.3 | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')
got=$(cd "$r1/versions" && LC_ALL=C ls -1 | tr '\n' ' ' | sed 's/ $//')
[[ $got == "$want" ]] || fail "w1 keeps '$got', want '$want'"
contains "$ERR" "worker w1: removed old versions v0.0.2, v0.0.1"
py '
ev = [e for e in audit() if e["event_type"] == "WorkerVersionsPruned"]
assert len(ev) == 1 and ev[0]["worker_id"] == "w1", ev
assert ev[0]["details"]["removed"] == ["v0.0.2", "v0.0.1"] and ev[0]["details"]["keep_versions"] == 3, ev'
# Nothing to remove: no event.
deploy 0 --worker w1 --version "$NEXT" --force
py 'assert len([e for e in audit() if e["event_type"] == "WorkerVersionsPruned"]) == 1'

# ---- keep_versions = 2: back to the older version; the one just left (now
# the previous, whatever its age) stays, v0.0.3 goes.
write_config $'[deploy]\nkeep_versions = 2\n'
touch -d 2019-01-01 "$r1/versions/v$NEXT/manifest.json"
deploy 0 --worker w1 --version "$OWN"
installed 1 "$OWN" "$OWN_SHA"
got=$(cd "$r1/versions" && LC_ALL=C ls -1 | tr '\n' ' ' | sed 's/ $//')
want=$(printf '%s\n' "v$NEXT" "v$OWN" | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')
[[ $got == "$want" ]] || fail "w1 keeps '$got', want '$want'"
# The previous version is still there to roll back to.
[[ -x $r1/versions/v$NEXT/rch-wkr ]] || fail "the previous version was pruned"

# ---- An old version that cannot be removed (a root-owned file in a
# root-owned subdirectory): the install stands, the worker completes, and the
# warning names the directory; the next version still goes in.
mkv 0.0.4 2020-01-04 manifest
mkdir "$r1/versions/v0.0.4/locked" && touch "$r1/versions/v0.0.4/locked/f" # (root's)
touch -d 2019-01-01 "$r1/versions/v$OWN/manifest.json"
RCH_LOG_LEVEL=info deploy 0 --worker w1 --version "$NEXT" --force
installed 1 "$NEXT" "$NEXT_SHA"
contains "$ERR" "worker w1: pruning old versions: cannot remove $r1/versions/v0.0.4: "
[[ -d $r1/versions/v0.0.4/locked ]] || fail "the locked version dir is gone"
rm -rf "$r1/versions/v0.0.4"

# ---- An old version whose removal never ends (an `rm -rf` stuck on a dead
# mount: w1's rm, shimmed, sleeps): the removal is stopped at half the
# command timeout, the install stands and the worker completes, not rolled
# back by the install's own timeout; the warning says what happened.
write_config $'command_timeout = 8\n[deploy]\nkeep_versions = 2\n'
mkv 0.0.5 2020-01-05 manifest
printf '#!/bin/sh\ncase $1 in -rf) exec sleep 3600 ;; esac\nexec /bin/rm "$@"\n' >"$TB/w1/shim/rm"
chmod 755 "$TB/w1/shim/rm"
RCH_LOG_LEVEL=info deploy 0 --worker w1 --version "$OWN"
rm -f "$TB/w1/shim/rm"
installed 1 "$OWN" "$OWN_SHA"
json 'assert st["w1"]["status"] == "Completed", st["w1"]'
contains "$ERR" "worker w1: pruning old versions: cannot remove $r1/versions/v0.0.5: not done within 4 s, stopped"
[[ -d $r1/versions/v$NEXT ]] || fail "the previous version was pruned"
rm -rf "$r1/versions/v0.0.5"

# Other workers were never touched.
[[ ! -e $(root_of 2)/versions ]] || fail "w2 has versions: $(ls "$(root_of 2)/versions")"
echo "PASS"
