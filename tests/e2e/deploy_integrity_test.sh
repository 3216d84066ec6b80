#!/usr/bin/env bash
# Worker-side integrity under hostile conditions, against the real sshd
# testbed (issue 9): a disk that fills up during the upload or before the
# manifest, binaries damaged in place after install, a worker root another
# local user can write (1777 parent, group/world-writable parent), and a
# worker whose sessions run under umask 000.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
((EUID == 0)) || fail "this test mounts a tmpfs and adds a user: run it as root"

EVIL=rchevil
MOUNTED=() SSHD_PID=
cleanup() {
  local m
  for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || true; done
  if [[ -n $SSHD_PID ]]; then kill "$SSHD_PID" 2>/dev/null && sleep 0.5; fi
  userdel -r "$EVIL" >/dev/null 2>&1 || true
  rm -rf "${SHARED:-/nonexistent}" "${LOOSE:-/nonexistent}"
  deploy_cleanup
}
trap cleanup EXIT
write_config $'[preflight]\nmin_disk_mb = 0\n'
stage "$NEXT" "$RCH_WKR_NEXT"
r1=$(root_of 1)
as_rchtest() { su rchtest -s /bin/sh -c "$1"; }
# no_temp_files K: nothing rch writes under a temp name is left in worker K's root.
no_temp_files() {
  local left
  left=$(find "$(root_of "$1")" -name '.rch-wkr.part.*' -o -name '.manifest.json.*' -o -name '*.new')
  [[ -z $left ]] || fail "w$1: temp files left: $left"
}

# ---- A full disk during the upload: the worker's own "No space left on device",
# nothing installed, the agent it ran before untouched, no partial file left.
own_size=$(stat -c %s "$RCH_WKR") next_size=$(stat -c %s "$RCH_WKR_NEXT")
# Room for the installed agent plus half of the next one (the two builds need not be the same size).
mount -t tmpfs -o "size=$((own_size + next_size / 2 + 65536)),mode=755,uid=$(id -u rchtest)" tmpfs "$r1"
MOUNTED+=("$r1")
deploy 0 --worker w1
deploy 1 --worker w1 --version "$NEXT"
json '
w = st["w1"]
assert w["status"] == "Failed" and w["error"].startswith("transfer: "), w
assert "No space left on device" in w["error"] and ".rch-wkr.part." in w["error"], w["error"]'
installed 1 "$OWN" "$OWN_SHA"
[[ $(versions_of 1) == "v$OWN" ]] || fail "w1: versions after the failed upload: $(versions_of 1)"
no_temp_files 1

# ---- A disk that fills between upload and install: the manifest cannot be
# written, so `current` does not move, and the message is the worker's.
mkdir -p "$TMP/fill/hooks"
cat >"$TMP/fill/hooks/pre_install.lua" <<'EOF'
-- Test hook: fill the worker's disk right before install.
return function(ctx)
  ctx.exec({ "sh", "-c", 'cat /dev/zero >"$1/filler" 2>/dev/null; true', "sh", ctx.root })
  return true
end
EOF
rm -rf "${r1:?}/versions" "${r1:?}/bin" "${r1:?}/current"
GLOBAL=(--script-dir "$TMP/fill")
deploy 1 --worker w1
GLOBAL=()
json '
w = st["w1"]
assert w["status"] in ("Failed", "RolledBack") and w["error"].startswith("install: "), w
assert "No space left on device" in w["error"] and "manifest.json" in w["error"], w["error"]'
no_agent 1
[[ ! -e $r1/versions/v$OWN/manifest.json ]] || fail "w1: a manifest was written on a full disk"
no_temp_files 1
umount "$r1"
MOUNTED=()
reset_workers

# ---- Leftover partial uploads (a connection killed mid-upload) are reported by
# fleet verify and removed by the next deploy.
deploy 0 --worker w1
as_rchtest "echo junk >'$r1/versions/v$OWN/.rch-wkr.part.AbC123'; mkdir -m 755 '$r1/versions/v9.9.9'; echo junk >'$r1/versions/v9.9.9/.rch-wkr.part.XyZ789'"
expect_exit 1 "$RCH" fleet verify --worker w1 --json
python3 -c '
import json, sys
w = json.loads(sys.stdin.read())["workers"][0]
assert w["findings"] == ["leftover partial upload(s): versions/v%s/.rch-wkr.part.AbC123 versions/v9.9.9/.rch-wkr.part.XyZ789 (the next deploy removes them)" % sys.argv[1]], w' "$OWN" <<<"$OUT" || fail "verify: $OUT"
deploy 0 --worker w1 --version "$NEXT"
[[ -z $(find "$r1" -name '.rch-wkr.part.*') ]] || fail "w1: partial uploads left after the next deploy"
installed 1 "$NEXT" "$NEXT_SHA"
expect_exit 0 "$RCH" fleet verify --worker w1

# ---- Binaries damaged in place after install (w1: same size, other bytes;
# w2: other size). The manifest records size and mtime, so a redeploy sees it.
reset_workers
deploy 0 --worker w1,w2
r2=$(root_of 2)
m=$(<"$r1/versions/v$OWN/manifest.json")
[[ $m == *"\"size\":$(stat -c %s "$RCH_WKR"),\"mtime\":\"$(stat -c %.9Y "$r1/versions/v$OWN/rch-wkr")\""* ]] ||
  fail "manifest lacks size/mtime: $m"
damage_same_size() { # FILE: one byte of its .comment section changed; it still runs
  local off
  off=$(grep -obUa 'GCC: (' "$1" | head -n 1 | cut -d: -f1)
  [[ -n $off ]] || fail "no .comment in $1"
  printf 'H' | dd of="$1" bs=1 seek="$off" conv=notrunc status=none
}
damage_same_size "$r1/versions/v$OWN/rch-wkr"
printf 'tampered' >>"$r2/versions/v$OWN/rch-wkr"
[[ $(stat -c %s "$r1/versions/v$OWN/rch-wkr") == $(stat -c %s "$RCH_WKR") ]] || fail "the damage changed the size"
BAD1=$(sha_of "$r1/versions/v$OWN/rch-wkr") BAD2=$(sha_of "$r2/versions/v$OWN/rch-wkr")
"$r1/bin/rch-wkr" --version >/dev/null && "$r2/bin/rch-wkr" --version >/dev/null || fail "damaged agents must still run"
expect_exit 1 "$RCH" fleet verify --worker w1,w2 --json
BAD1=$BAD1 BAD2=$BAD2 SIZE=$(stat -c %s "$RCH_WKR") python3 -c '
import json, os, sys
w = {x["worker_id"]: x for x in json.loads(sys.stdin.read())["workers"]}
e = os.environ
assert w["w1"]["findings"] == ["versions/v%s/rch-wkr was modified: sha256 %s, manifest says %s" % (e["OWN"], e["BAD1"], e["OWN_SHA"])], w["w1"]
assert w["w2"]["findings"] == ["versions/v%s/rch-wkr was modified: sha256 %s, manifest says %s (%d bytes, manifest says %s)"
  % (e["OWN"], e["BAD2"], e["OWN_SHA"], int(e["SIZE"]) + 8, e["SIZE"])], w["w2"]' <<<"$OUT" || fail "verify: $OUT"
# A plain redeploy replaces both (it does not trust a manifest whose size or mtime is off);
# its dry run says so.
deploy 0 --worker w1,w2 --dry-run
json 'assert [(p["worker_id"], p["action"]) for p in d["predictions"]] == [("w1", "Reinstall"), ("w2", "Reinstall")], d'
deploy 0 --worker w1,w2
json '
for i in ("w1", "w2"):
    assert st[i]["status"] == "Completed", st[i]
    t = [s for s in st[i]["steps"] if s["name"] == "transfer"][0]
    assert t["output"] != "already present, sha256 matches", t'
contains "$ERR" "does not match its manifest"
installed 1 "$OWN" "$OWN_SHA"
installed 2 "$OWN" "$OWN_SHA"
expect_exit 0 "$RCH" fleet verify --worker w1,w2
# Same size and the old mtime put back: a plain redeploy trusts the manifest
# (that is what keeps it fast), --verify hashes the real file and repairs it.
f=$r1/versions/v$OWN/rch-wkr
cp -p "$f" "$TMP/ref"
damage_same_size "$f"
touch -r "$TMP/ref" "$f"
deploy 0 --worker w1
json 'assert st["w1"]["status"] == "Skipped", st["w1"]'
deploy 0 --worker w1 --verify
json 'assert st["w1"]["status"] == "Completed", st["w1"]'
installed 1 "$OWN" "$OWN_SHA"
damage_same_size "$f"
touch -r "$TMP/ref" "$f"
expect_exit 1 "$RCH" fleet verify --worker w1
contains "$OUT" "versions/v$OWN/rch-wkr was modified"

# ---- A worker root that another local user can write. SHARED is a 1777
# directory (like /tmp): rchevil pre-creates the root with a version dir and a
# symlink at a temp name pointing at a file of the login user, and an
# rch-wkr that records whoever runs it.
reset_workers
for _ in $(seq 50); do
  id -u "$EVIL" >/dev/null 2>&1 && break
  useradd --no-create-home --shell /bin/sh "$EVIL" 2>/dev/null || sleep 0.1
done
id -u "$EVIL" >/dev/null 2>&1 || fail "cannot create user $EVIL"
SHARED=$(mktemp -d /tmp/rch-shared.XXXXXX); export SHARED
chmod 1777 "$SHARED"
as_rchtest "umask 077; echo precious >'$SHARED/precious'"
PRECIOUS=$(sha_of "$SHARED/precious")
su "$EVIL" -s /bin/sh -c "
umask 000
mkdir -p '$SHARED/root/versions/v$OWN' '$SHARED/root/bin'
ln -s '$SHARED/precious' '$SHARED/root/versions/v$OWN/.manifest.json.tmp'
printf '#!/bin/sh\ntouch \"$SHARED/ran-by-\$(id -un)\"\necho rch-wkr $OWN\n' >'$SHARED/root/bin/rch-wkr'
chmod 755 '$SHARED/root/bin/rch-wkr'"
set_root() { cp "$TB/workers.toml" "$CFG/workers.toml"; sed -i "s|root = \"$TB/w1/root\"|root = \"$1\"|" "$CFG/workers.toml"; }
set_root "$SHARED/root"
deploy 1 --worker w1
json '
w = st["w1"]
assert w["status"] == "Failed" and w["error"].startswith("preflight: root_ownership: "), w
assert w["error"].endswith(os.environ["SHARED"] + "/root is owned by rchevil, not by rchtest or root: chown rchtest "
  + os.environ["SHARED"] + "/root (or use another root)"), w["error"]'
[[ $(sha_of "$SHARED/precious") == "$PRECIOUS" ]] || fail "the symlink target was written"
[[ ! -e $SHARED/root/versions/v$OWN/rch-wkr && ! -e $SHARED/root/current ]] || fail "rch wrote into the foreign root"
# Read-only commands do not run its rch-wkr either.
expect_exit 0 "$RCH" fleet status --worker w1 --json
contains "$OUT" "unsafe worker root: $SHARED/root is owned by rchevil"
expect_exit 1 "$RCH" fleet verify --worker w1 --json
contains "$OUT" "unsafe worker root (rch-wkr not run): $SHARED/root is owned by rchevil"
expect_exit 1 "$RCH" fleet drain --worker w1 --timeout 1
contains "$OUT$ERR" "unsafe worker root: $SHARED/root is owned by rchevil"
[[ -z $(compgen -G "$SHARED/ran-by-*") ]] || fail "rch ran the foreign rch-wkr: $(ls "$SHARED")"
# The login user's own root in the same 1777 directory is fine (sticky: nobody
# else can rename or remove it), and rch creates it 0755.
set_root "$SHARED/mine"
deploy 0 --worker w1
[[ $(stat -c '%U %a' "$SHARED/mine") == "rchtest 755" ]] || fail "root made as $(stat -c '%U %a' "$SHARED/mine")"
# Someone else's binary in the login user's root is refused too, and not run.
cp "$SHARED/root/bin/rch-wkr" "$SHARED/mine/evil" && chown "$EVIL" "$SHARED/mine/evil"
ln -sfn ../evil "$SHARED/mine/bin/rch-wkr"
expect_exit 0 "$RCH" fleet status --worker w1 --json
contains "$OUT" "unsafe worker root: $SHARED/mine/evil is owned by rchevil"
[[ -z $(compgen -G "$SHARED/ran-by-*") ]] || fail "rch ran the foreign rch-wkr: $(ls "$SHARED")"

# ---- A root whose parent is group- or world-writable without the sticky bit.
LOOSE=$(mktemp -d /tmp/rch-loose.XXXXXX); export LOOSE
chgrp rchtest "$LOOSE"  # 775: the login user writes there through its group, and so could others in it
for mode in 777 775; do
  chmod "$mode" "$LOOSE"
  set_root "$LOOSE/root"
  deploy 1 --worker w1
  json '
w = st["w1"]
assert w["error"] == "preflight: root_ownership: %s (mode %s) is writable by group or others: chmod go-w %s" % (
  os.environ["LOOSE"], "'$mode'", os.environ["LOOSE"]), w["error"]'
  [[ ! -e $LOOSE/root ]] || fail "rch created a root under a $mode parent"
done
# A good root reached through a symlink that lives in such a directory: whoever
# can write there can point the symlink elsewhere.
chmod 777 "$LOOSE"
ln -s "$r1" "$LOOSE/link"
set_root "$LOOSE/link"
deploy 1 --worker w1
contains "$OUT" "preflight: root_ownership: $LOOSE (mode 777) is writable by group or others: chmod go-w $LOOSE"
no_agent 1
cp "$TB/workers.toml" "$CFG/workers.toml"

# ---- A worker whose sessions run under umask 000 (a site's pam_umask, say):
# modes on the worker do not follow it.
reset_workers
bash "$RCH_SOURCE_DIR/scripts/testbed.sh" stop 1 "$TB" >/dev/null
sed -e "s|^PidFile .*|PidFile $TMP/sshd000.pid|" "$TB/w1/sshd_config" >"$TMP/sshd000_config"
echo 'ForceCommand umask 000; eval "$SSH_ORIGINAL_COMMAND"' >>"$TMP/sshd000_config"
/usr/sbin/sshd -f "$TMP/sshd000_config" -E "$TMP/sshd000.log" </dev/null
wait_for "$TMP/sshd000.pid"
SSHD_PID=$(<"$TMP/sshd000.pid")
ssh_w1() {
  ssh -o BatchMode=yes -o UserKnownHostsFile="$TB/known_hosts" -i "$TB/client/id_ed25519" \
    -p "$(<"$TB/w1/port")" rchtest@127.0.0.1 "$@"
}
for _ in $(seq 100); do ssh_w1 true 2>/dev/null && break; sleep 0.05; done
[[ $(ssh_w1 umask) == 0000 ]] || fail "the umask 000 sshd does not give umask 000"
deploy 0 --worker w1
expect_exit 0 "$RCH" fleet drain --worker w1 --timeout 5
ssh_w1 "'$r1/bin/rch-wkr' undrain && '$r1/bin/rch-wkr' exec -- true" || fail "rch-wkr exec under umask 000"
modes=$(cd "$r1" && stat -c '%n %a' . versions "versions/v$OWN" "versions/v$OWN/rch-wkr" "versions/v$OWN/manifest.json" \
  bin state state/leases)
[[ $modes == ". 755
versions 755
versions/v$OWN 755
versions/v$OWN/rch-wkr 755
versions/v$OWN/manifest.json 644
bin 755
state 700
state/leases 700" ]] || fail "modes under umask 000: $modes"
kill "$SSHD_PID"
for _ in $(seq 100); do [[ -e /proc/$SSHD_PID ]] || break; sleep 0.05; done
SSHD_PID=
bash "$RCH_SOURCE_DIR/scripts/testbed.sh" start 1 "$TB" >/dev/null

echo "deploy_integrity_test: ok"
