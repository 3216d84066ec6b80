#!/usr/bin/env bash
# Against the real sshd testbed: how the artifact travels. A first install
# goes zstd-compressed, an upgrade as a zstd patch against the agent the
# worker runs (made once and cached, rebuilt on the worker with
# `zstd -d --patch-from`); both install the artifact's exact bytes. A
# controller that does not hold the worker's agent, or a worker whose agent
# changed in place, falls back to the compressed file and says why; a
# corrupted patch is refused with nothing installed; an incompressible
# artifact goes as it is; [deploy] compress/delta = "never" turn each off.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
CACHE=$RCH_CACHE_DIR/transfer
export RCH_LOG_LEVEL=info
# sent K: how the artifact went to worker K in the deploy whose JSON is in $OUT.
sent() {
  K=w$1 python3 -c '
import json, os, sys
w = {w["worker_id"]: w for w in json.loads(sys.stdin.read())["workers"]}[os.environ["K"]]
assert w["status"] == "Completed", w
print([s for s in w["steps"] if s["name"] == "transfer"][0]["output"])' <<<"$OUT" || fail "no transfer of w$1 in: $OUT"
}
stage "$NEXT" "$RCH_WKR_NEXT"

# ---- A first install: compressed once on the controller, decoded on each worker.
deploy 0 --worker w1,w2,w3,w4
for k in 1 2 3 4; do
  installed "$k" "$OWN" "$OWN_SHA"
  contains "$(sent "$k")" "sent as zstd-compressed"
done
contains "$ERR" "worker w1: sending zstd-compressed"
contains "$ERR" "no patch: no agent installed to patch"
[[ -f $CACHE/$OWN_SHA.zst ]] || fail "the compressed artifact is not cached: $(ls -la "$CACHE")"
zst_size=$(stat -c %s "$CACHE/$OWN_SHA.zst")
((zst_size < $(stat -c %s "$RCH_WKR") * 6 / 10)) || fail "the compressed artifact has $zst_size bytes"

# ---- The upgrade to the next version (a version bump) is a patch against the
# agent each runs, found among the earlier deployments' artifacts.
deploy 0 --worker w1 --version "$NEXT"
installed 1 "$NEXT" "$NEXT_SHA"
contains "$(sent 1)" "sent as zstd patch"
patch=$CACHE/$OWN_SHA-$NEXT_SHA.patch
[[ -f $patch ]] || fail "no cached patch: $(ls -la "$CACHE")"
# (rch-wkr-next is another CMake target: its debug info names other object paths, so the
# patch is ~100 KB, not the few hundred bytes of two stripped builds that differ in the version.)
(($(stat -c %s "$patch") < zst_size / 5)) || fail "a version bump patch of $(stat -c %s "$patch") bytes"

# ---- A corrupted patch: the worker refuses it, nothing is installed, and the
# cached patch goes so that the next run makes it again.
printf '\x5a' | dd of="$patch" bs=1 seek=$(($(stat -c %s "$patch") / 2)) conv=notrunc status=none
deploy 1 --worker w2 --version "$NEXT"
json '
w = st["w2"]
assert w["status"] == "Failed" and w["error"].startswith("transfer: "), w
assert "cannot decode the patch upload" in w["error"] or "sha256 mismatch" in w["error"], w["error"]'
installed 2 "$OWN" "$OWN_SHA"
[[ $(versions_of 2) == "v$OWN" ]] || fail "w2: versions after the refused patch: $(versions_of 2)"
[[ -z $(find "$(root_of 2)" -name '.rch-wkr.part.*') ]] || fail "w2: a partial file is left"
[[ ! -e $patch ]] || fail "the corrupted patch was kept"
deploy 0 --worker w2 --version "$NEXT"
installed 2 "$NEXT" "$NEXT_SHA"
contains "$(sent 2)" "sent as zstd patch"

# ---- A controller without the worker's agent (a fresh cache, and not under
# $RCH_HOME/versions): compressed, with the reason.
RCH_CACHE_DIR=$TMP/cache2 deploy 0 --worker w3 --version "$NEXT"
installed 3 "$NEXT" "$NEXT_SHA"
contains "$(sent 3)" "sent as zstd-compressed"
contains "$ERR" "no patch: this controller does not hold the agent the worker runs ($OWN, sha256 ${OWN_SHA:0:12}"

# ---- w4's agent changed in place since its install (same size and mtime, so
# preflight trusts its manifest): the worker finds the patch base is not what
# the controller patched, and the compressed file follows.
r4=$(root_of 4)
f=$r4/versions/v$OWN/rch-wkr
cp -p "$f" "$TMP/ref"
off=$(grep -obUa 'GCC: (' "$f" | head -n 1 | cut -d: -f1)
printf 'H' | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
touch -r "$TMP/ref" "$f"
[[ $(sha_of "$f") != "$OWN_SHA" ]] || fail "damage not as intended"
deploy 0 --worker w4 --version "$NEXT"
installed 4 "$NEXT" "$NEXT_SHA"
contains "$(sent 4)" "sent as zstd-compressed"
contains "$ERR" "worker w4: sending zstd-compressed"
contains "$ERR" "patch base $r4/versions/v$OWN/rch-wkr has sha256 $(sha_of "$f"), not $OWN_SHA"

# ---- [deploy] compress and delta = "never": the whole file.
write_config $'[deploy]\ncompress = "never"\ndelta = "never"'
rm -rf "$(root_of 1)/versions/v$OWN" # (else it is already there)
deploy 0 --worker w1 --version "$OWN"
installed 1 "$OWN" "$OWN_SHA"
contains "$(sent 1)" "sent as whole file"
contains "$ERR" "[deploy] compress = never; [deploy] delta = never"
write_config

# ---- An incompressible artifact (the agent with 64 MiB of random bytes
# appended: it still runs) goes as it is, measured once.
reset_workers
head -c $((64 << 20)) /dev/urandom | cat "$RCH_WKR_NEXT" - >"$TMP/big"
chmod 755 "$TMP/big"
stage "$NEXT" "$TMP/big"
big_sha=$(sha_of "$TMP/big")
deploy 0 --worker w1 --version "$NEXT"
installed 1 "$NEXT" "$big_sha"
contains "$(sent 1)" "sent as whole file"
contains "$ERR" "not compressed: it does not compress"
[[ -f $CACHE/$big_sha.plain && ! -e $CACHE/$big_sha.zst ]] || fail "the ratio is not remembered: $(ls -la "$CACHE")"
echo "ok"
