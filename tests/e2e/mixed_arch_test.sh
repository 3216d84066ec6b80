#!/usr/bin/env bash
# A mixed-architecture fleet against the real sshd testbed: w3's and w4's `uname -m`
# are shimmed to report aarch64 (a `uname` in its shim dir, which sshd puts first on
# PATH), qemu-aarch64 is registered with binfmt_misc here (F flag), and a signed
# release of the next version with an aarch64 tarball (cross-built by
# scripts/make-release.sh: a static rch-wkr from Debian's aarch64 compiler) is
# served over local HTTP. `fleet deploy --version NEXT` then sends the local
# x86_64 build to w1-w2 and the release's verified aarch64 build to w3-w4, which
# run it through qemu:
#   dry run (text and --json) names each worker's artifact and changes nothing;
#   a tarball with other bytes (checksum) and one whose checksums were rewritten
#   to match it (signature) each fail w3-w4 alone, naming them, the architecture
#   and the URL, with nothing installed there, while w1-w2 complete;
#   --resume of that deployment refuses an aarch64 build other than the one its
#   plan records, and ships the one it records;
#   the real deploy: each worker's rch-wkr has the ELF machine of its
#   architecture, the aarch64 ones run (--version over ssh), the release is
#   fetched once for both, plan.json records the aarch64 artifact, fleet verify
#   and status pass, and a redeploy skips all four.
set -euo pipefail
: "${RCH_SOURCE_DIR:?}"
# shellcheck source=tests/e2e/lib.sh
. "$RCH_SOURCE_DIR/tests/e2e/lib.sh"
# shellcheck source=tests/e2e/deploy_lib.sh
. "$RCH_SOURCE_DIR/tests/e2e/deploy_lib.sh"
for tool in aarch64-linux-gnu-g++ qemu-aarch64-static minisign; do
  command -v "$tool" >/dev/null || fail "$tool is not installed: run scripts/bootstrap.sh"
done

# ------------------------------------------------------------------ qemu-user in binfmt_misc

BINFMT=/proc/sys/fs/binfmt_misc
BINFMT_NAME=rch-test-aarch64-$$
MOUNTED=no
unregister() {
  if [[ -e $BINFMT/$BINFMT_NAME ]]; then echo -1 >"$BINFMT/$BINFMT_NAME" || true; fi
  if [[ $MOUNTED == yes ]]; then umount "$BINFMT" || true; fi
}
trap 'unregister; deploy_cleanup' EXIT
if [[ ! -e $BINFMT/register ]]; then
  mount -t binfmt_misc binfmt_misc "$BINFMT" 2>"$TMP/mount.err" ||
    fail "binfmt_misc is not mounted and mounting it failed: $(cat "$TMP/mount.err") (needs root and CAP_SYS_ADMIN)"
  MOUNTED=yes
fi
# Debian's qemu-aarch64 entry: an ELF64 little-endian executable (or PIE) for machine 183.
magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
# F: the kernel opens the interpreter now, so it also runs inside sshd sessions.
echo ":$BINFMT_NAME:M::$magic:$mask:$(command -v qemu-aarch64-static):F" >"$BINFMT/register" 2>"$TMP/reg.err" ||
  fail "cannot register qemu-aarch64 in $BINFMT: $(cat "$TMP/reg.err")"
[[ $(head -n 1 "$BINFMT/$BINFMT_NAME") == enabled ]] || fail "$BINFMT/$BINFMT_NAME is not enabled"

# ------------------------------------------------------------------ the release of NEXT for aarch64

SRV=$TMP/srv
mkdir -p "$SRV/releases"
python3 "$RCH_SOURCE_DIR/tests/unit/https_server.py" "$TMP/http.port" "$SRV" --log "$TMP/http.log" \
  >"$TMP/http.out" 2>&1 &
BACKGROUND+=($!)
wait_until 20 test -s "$TMP/http.port"
BASE=http://127.0.0.1:$(cat "$TMP/http.port")/releases
minisign -G -W -p "$TMP/key.pub" -s "$TMP/key.sec" >/dev/null
PUBKEY=$(tail -n 1 "$TMP/key.pub")
ARM=aarch64-unknown-linux-gnu
TARBALL=rch-v$NEXT-$ARM.tar.gz
REL=$SRV/releases/v$NEXT
# The cross build dir lives beside the rch under test, so a rerun recompiles only build_info.cpp.
start=$SECONDS
RCH_RELEASE_TARGETS=$ARM RCH_RELEASE_BASE_URL=$BASE RCH_MINISIGN_SECRET_KEY=$TMP/key.sec \
  RCH_RELEASE_BUILD_DIR=$(dirname "$RCH")/mixed-arch-release \
  bash "$RCH_SOURCE_DIR/scripts/make-release.sh" "$NEXT" "$REL" 2>"$TMP/make-release.err" ||
  fail "make-release $NEXT for $ARM: $(cat "$TMP/make-release.err")"
echo "built the $ARM release of $NEXT in $((SECONDS - start)) s" >&2
bash "$RCH_SOURCE_DIR/scripts/make-releases-index.sh" "$SRV/releases" 2>/dev/null || fail "make-releases-index"
mkdir "$TMP/arm"
tar -xzf "$REL/$TARBALL" -C "$TMP/arm"
[[ $(ls "$TMP/arm" | tr '\n' ' ') == "RELEASE_NOTES.md rch-wkr rchd " ]] || fail "tarball holds: $(ls "$TMP/arm")"
ARM_SHA=$(sha_of "$TMP/arm/rch-wkr")
cp "$REL/$TARBALL" "$TMP/good.tar.gz"
cp "$REL/checksums.txt" "$TMP/good.checksums"

# elf_machine FILE: the e_machine field of an ELF (62 x86_64, 183 aarch64).
elf_machine() { python3 -c 'import sys; h = open(sys.argv[1], "rb").read(20); print(int.from_bytes(h[18:20], "little"))' "$1"; }
[[ $(elf_machine "$TMP/arm/rch-wkr") == 183 ]] || fail "the release's rch-wkr is not an aarch64 ELF"
[[ $("$TMP/arm/rch-wkr" --version) == "rch-wkr $NEXT" ]] || fail "the aarch64 rch-wkr does not run through qemu"

write_config "[update]
url = \"$BASE/releases.json\"
minisign_pubkey = \"$PUBKEY\"
"
stage "$NEXT" "$RCH_WKR_NEXT"

# ------------------------------------------------------------------ w3 and w4 report aarch64

# shim_arm: w3 and w4 say they are aarch64 (reset_workers empties the shim dirs again).
shim_arm() {
  local k
  for k in 3 4; do
    printf '#!/bin/sh\n# Test stand-in: this worker says it is aarch64.\n%s\n' \
      'if [ "$1" = -m ]; then echo aarch64; else exec /bin/uname "$@"; fi' >"$TB/w$k/shim/uname"
    chmod 755 "$TB/w$k/shim/uname"
  done
}
shim_arm
[[ $(on 4 uname -m) == aarch64 ]] || fail "w4's uname -m is not shimmed: $(on 4 uname -m)"
[[ $(on 1 uname -m) == x86_64 ]] || fail "w1's uname -m is $(on 1 uname -m)"

# ------------------------------------------------------------------ dry run

snap_all before
expect_exit 0 "$RCH" fleet deploy --dry-run --json --no-toolchain --version "$NEXT"
json "
p = {x['worker_id']: x for x in d['predictions']}
for w in ('w1', 'w2'):
    a = p[w]['artifact']
    assert p[w]['action'] == 'Install', p[w]
    assert a['arch'] == 'x86_64' and a['sha256'] == '$NEXT_SHA' and a['source'] == 'local', a
for w in ('w3', 'w4'):
    a = p[w]['artifact']
    assert p[w]['action'] == 'Install', p[w]
    assert a['arch'] == 'aarch64' and a['sha256'] == '$ARM_SHA' and a['source'] == '$BASE/v$NEXT/$TARBALL', a"
expect_exit 0 "$RCH" fleet deploy --dry-run --no-toolchain --version "$NEXT"
contains "$OUT" "Artifacts:
  w[1-2]: x86_64 ${NEXT_SHA:0:12}… "
contains "$OUT" "from $RCH_HOME/versions/v$NEXT/rch-wkr
  w[3-4]: aarch64 ${ARM_SHA:0:12}… "
contains "$OUT" "from $BASE/v$NEXT/$TARBALL"
same_as before 1 2 3 4

# ------------------------------------------------------------------ tampered aarch64 release

# failed_alone WHAT: the deploy failed w3 and w4 alone (naming them, aarch64 and the URL, WHAT
# in the error) with nothing installed there, and w1-w2 run NEXT.
failed_alone() {
  json "
for w in ('w3', 'w4'):
    assert st[w]['status'] == 'Failed', st[w]
    e = st[w]['error']
    assert 'aarch64' in e and '$BASE' in e and '''$1''' in e, e
for w in ('w1', 'w2'): assert st[w]['status'] == 'Completed', st[w]"
  local k
  for k in 1 2; do installed "$k" "$NEXT" "$NEXT_SHA"; done
  for k in 3 4; do
    contains "$ERR" "worker w$k failed at preflight"
    no_agent "$k"
    [[ -z $(versions_of "$k") ]] || fail "w$k has versions: $(versions_of "$k")"
  done
}
# Other bytes, same size: the sha256 check refuses them. (The dry run's download is cached,
# and reused while it matches the release's .sha256: the tampered mirror is met on a first fetch.)
rm -rf "$RCH_CACHE_DIR/downloads" "$RCH_CACHE_DIR/artifacts"
python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0xff; open(p, "wb").write(b)' \
  "$REL/$TARBALL"
deploy 1 --version "$NEXT"
failed_alone "refusing it"
reset_workers
shim_arm
# The checksums rewritten to match: the signature of checksums.txt refuses them.
(cd "$REL" && sha256sum "$TARBALL" >"$TARBALL.sha256" && sha256sum RELEASE_NOTES.md "$TARBALL" >checksums.txt)
deploy 1 --version "$NEXT"
failed_alone "signature verification failed"
for f in "$TARBALL" "$TARBALL.part"; do
  [[ ! -e $RCH_CACHE_DIR/downloads/v$NEXT/$f ]] || fail "the refused $f stayed in the cache"
done
cp "$TMP/good.tar.gz" "$REL/$TARBALL"
cp "$TMP/good.checksums" "$REL/checksums.txt"
(cd "$REL" && sha256sum "$TARBALL" >"$TARBALL.sha256")

# ------------------------------------------------------------------ --resume ships the recorded bytes

dep_id() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$OUT"; }
# plan_arm ID SHA: deployment ID's plan says its aarch64 workers got SHA (as if the release changed since).
plan_arm() {
  py "
p = os.environ['RCH_STATE_DIR'] + '/deployments/$1/plan.json'
plan = json.load(open(p))
plan['artifacts'] = {'aarch64': {'sha256': '$2', 'arch': 'aarch64', 'source': 'earlier'}}
json.dump(plan, open(p, 'w'))"
}
plan_arm "$(dep_id)" "$(printf '0%.0s' {1..64})"
deploy 1 --resume
json "
assert sorted(st) == ['w3', 'w4'], st
for w in ('w3', 'w4'):
    e = st[w]['error']
    assert st[w]['status'] == 'Failed' and '--resume' in e and '$ARM_SHA' in e and '0' * 64 in e, st[w]"
no_agent 3
no_agent 4
plan_arm "$(dep_id)" "$ARM_SHA"
deploy 0 --resume
json "assert sorted(st) == ['w3', 'w4'] and all(w['status'] == 'Completed' for w in st.values()), st"
installed 3 "$NEXT" "$ARM_SHA"
installed 4 "$NEXT" "$ARM_SHA"
reset_workers
shim_arm

# ------------------------------------------------------------------ the mixed deploy

lists=$(grep -c "GET /releases/releases.json" "$TMP/http.log")
deploy 0 --version "$NEXT"
json "assert all(w['status'] == 'Completed' for w in d['workers']), d['workers']"
# Two aarch64 workers, one fetch: the release list was read once in this command.
(($(grep -c "GET /releases/releases.json" "$TMP/http.log") == lists + 1)) ||
  fail "the release list was fetched $(($(grep -c "GET /releases/releases.json" "$TMP/http.log") - lists)) times"
for k in 1 2; do
  installed "$k" "$NEXT" "$NEXT_SHA"
  [[ $(elf_machine "$(root_of "$k")/versions/v$NEXT/rch-wkr") == 62 ]] || fail "w$k did not get an x86_64 rch-wkr"
done
for k in 3 4; do
  installed "$k" "$NEXT" "$ARM_SHA"
  [[ $(elf_machine "$(root_of "$k")/versions/v$NEXT/rch-wkr") == 183 ]] || fail "w$k did not get an aarch64 rch-wkr"
  [[ $(on "$k" "$(root_of "$k")/bin/rch-wkr" --version) == "rch-wkr $NEXT" ]] ||
    fail "w$k's rch-wkr does not run over ssh"
done
py "
plan = json.load(open(os.environ['RCH_STATE_DIR'] + '/deployments/$(dep_id)/plan.json'))
assert plan['artifact']['arch'] == 'x86_64' and plan['artifact']['sha256'] == '$NEXT_SHA', plan['artifact']
a = plan['artifacts']['aarch64']
assert a['sha256'] == '$ARM_SHA' and a['source'] == '$BASE/v$NEXT/$TARBALL' and a['target'] == '$ARM', a"

expect_exit 0 "$RCH" fleet verify --json
expect_exit 0 "$RCH" fleet status --json
json "
v = {w['worker_id']: w['version'] for w in d['workers']}
assert v == {'w1': '$NEXT', 'w2': '$NEXT', 'w3': '$NEXT', 'w4': '$NEXT'}, v"
deploy 0 --version "$NEXT"
json "assert all(w['status'] == 'Skipped' for w in d['workers']), d['workers']"
echo "mixed_arch_test: ok"
