#!/usr/bin/env bash
# E2E tests of `rch update`. Builds releases 0.1.0 and 0.2.0 of this tree with
# scripts/make-release.sh (minisigned with a key made here), serves them over
# HTTPS with a test CA, installs 0.1.0 by hand into a temporary RCH_HOME and
# drives $RCH_HOME/bin/rch from there:
#   discovery per channel (stable, beta, nightly; --version pin; RCH_RELEASE_URL),
#   an untrusted server refused, dry run changes nothing, no TTY without --yes;
#   tampered tarball, wrong .sha256, checksums.txt mismatch, bad signature,
#   another key's signature, a trusted comment for another version, no
#   signature, an oversized tarball, wrong binaries, and tarballs with ../x,
#   /abs or a symlink: each refused with nothing installed and rchd untouched;
#   update 0.1.0 -> 0.2.0 while rchd runs a build (drain, stop, restart with a
#   new pid at 0.2.0), a concurrent update refused (a running one and a lock
#   held with flock); --verify; --rollback; --json; downgrade rules; --force
#   without a key; pruning; kill -9 at a drain and at random moments; --fleet
#   against the testbed's workers; an rchd that systemd runs is started again
#   through systemctl (a stand-in on PATH), and a note names the rch first on
#   PATH when it is not $RCH_HOME/bin/rch.
set -euo pipefail
: "${RCH_SOURCE_DIR:?set RCH_SOURCE_DIR to the rch source tree}"
: "${RCH_TESTBED_DIR:?set RCH_TESTBED_DIR to a testbed (scripts/testbed.sh up 4 DIR)}"
RCH=${RCH:-unused}
# shellcheck source=tests/e2e/lib.sh
. "$RCH_SOURCE_DIR/tests/e2e/lib.sh"
command -v minisign >/dev/null || fail "minisign is not installed: run scripts/bootstrap.sh"

W=$TMP
TARGET=x86_64-unknown-linux-gnu
SRV=$W/srv
mkdir -p "$SRV/releases" "$SRV/bad" "$W/certs"
BACKGROUND=()
cleanup() {
  local p
  for p in "${BACKGROUND[@]}"; do
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [[ -f $W/home/rchd.pid ]]; then kill -9 "$(cat "$W/home/rchd.pid")" 2>/dev/null || true; fi
  reset_workers || true
  if [[ -n ${RCH_TEST_KEEP:-} ]]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ helpers


# shellcheck source=tests/e2e/rchd_lib.sh
source "$(dirname "$0")/rchd_lib.sh"
# rq JSON: one request to rchd's socket, prints the reply line.
rq() { rchd_request "$RCH_HOME/rchd.sock" "$1"; }
# field JSON KEY: KEY's value, JSON-encoded.
# jcheck JSON PYTHON: runs PYTHON with d = the parsed JSON; fails the test when it raises.
jcheck() {
  python3 -c "import json, sys
d = json.loads(sys.argv[1])
$2" "$1" || fail "JSON check failed: $2
--- json: $1
--- stderr: ${ERR:-}"
}

rchd_pid() { cat "$RCH_HOME/rchd.pid"; }
# gone PID: PID has exited (a zombie counts: the daemon's parent may not be a reaper).
gone() { ! kill -0 "$1" 2>/dev/null || [[ $(ps -o stat= -p "$1" 2>/dev/null) == Z* ]]; }
rchd_version() { field "$(rq '{"cmd":"status"}')" version; }
# rchd_is PID VERSION: the daemon answering is PID at VERSION.
rchd_is() {
  local st
  st=$(rq '{"cmd":"status"}') || fail "rchd does not answer on $RCH_HOME/rchd.sock"
  [[ $(field "$st" pid) == "$1" ]] || fail "rchd pid is $(field "$st" pid), want $1"
  [[ $(field "$st" version) == "\"$2\"" ]] || fail "rchd version is $(field "$st" version), want $2"
}
start_rchd() {
  "$RCH_HOME/bin/rchd" run --root "$RCH_HOME" || fail "rchd run failed"
}

U=  # the rch under test: $RCH_HOME/bin/rch
# is_installed VER: current, the bin links and all three binaries are VER.
is_installed() {
  local v=$1 b
  [[ $(readlink "$RCH_HOME/current") == "versions/v$v" ]] || fail "current -> $(readlink "$RCH_HOME/current"), want versions/v$v"
  for b in rch rchd rch-wkr; do
    [[ $(readlink "$RCH_HOME/bin/$b") == "../current/$b" ]] || fail "bin/$b -> $(readlink "$RCH_HOME/bin/$b")"
    [[ $("$RCH_HOME/bin/$b" --version) == "$b $v" ]] || fail "bin/$b --version: $("$RCH_HOME/bin/$b" --version)"
  done
}
no_staging() {
  local left
  left=$(find "$RCH_HOME" "$RCH_HOME/bin" -maxdepth 1 -name '.staging-*' 2>/dev/null)
  [[ -z $left ]] || fail "staging left behind: $left"
}
# snap_home [loose]: every entry of RCH_HOME (type, size, mode, mtime, link) and
# every file's sha256; rchd's own files (log, socket, pidfile, leases)
# excluded. "loose" leaves out the mtimes of directories (a staging dir made
# and removed again changes its parent's mtime, not what is installed).
snap_home() {
  local dir_fmt='%p|%y|%s|%m|%T@|%l\n'
  [[ ${1:-} == loose ]] && dir_fmt='%p|%y|%m\n'
  (cd "$RCH_HOME" && find . \( -path ./daemon -o -name rchd.log -o -name rchd.sock -o -name rchd.pid \) -prune -o \
    \( -type d -printf "$dir_fmt" \) -o -printf '%p|%y|%s|%m|%T@|%l\n' | LC_ALL=C sort &&
    find . -path ./daemon -prune -o -type f ! -name 'rchd.*' -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
}
versions_list() { find "$RCH_HOME/versions" -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'; }

sha() { sha256sum "$1" | cut -d' ' -f1; }

# logged LEVEL FILE TEXT: FILE (a --log-file) has a line at LEVEL containing TEXT (fixed string).
logged() {
  # (grep -c, not -q: -q would stop reading early and, under pipefail, fail the first grep.)
  (($(grep -F "$3" "$2" | grep -cE "^\[[0-9T:.-]+ $1\] ") > 0)) || fail "no $1 line with '$3' in $2: $(cat "$2")"
}

# ------------------------------------------------------------------ certs, keys, servers

cnf=$W/certs/openssl.cnf
cat >"$cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = rch test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
EOF
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
(
  cd "$W/certs"
  openssl req -x509 -config "$cnf" -extensions ca -days 2 -subj "/CN=rch update test CA" "${ec[@]}" \
    -keyout ca.key -out ca.pem
  openssl req -new -config "$cnf" -subj /CN=localhost "${ec[@]}" -keyout server.key -out server.csr
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 -extfile "$cnf" \
    -extensions server -out server.pem
  openssl req -x509 -config "$cnf" -extensions server -days 2 -subj /CN=localhost "${ec[@]}" \
    -keyout self.key -out self.pem
) >"$W/certs/openssl.log" 2>&1 || fail "openssl: $(cat "$W/certs/openssl.log")"

minisign -G -W -p "$W/key.pub" -s "$W/key.sec" >/dev/null
minisign -G -W -p "$W/other.pub" -s "$W/other.sec" >/dev/null
PUBKEY=$(tail -n 1 "$W/key.pub")

# serve NAME CERT KEY: https_server.py over $SRV, its port in $W/NAME.port.
# (Not in a $(…) subshell: BACKGROUND must record the pid for the cleanup.)
serve() {
  python3 "$RCH_SOURCE_DIR/tests/unit/https_server.py" "$W/$1.port" "$SRV" --cert "$2" --key "$3" \
    --log "$W/$1.log" >"$W/$1.out" 2>&1 &
  BACKGROUND+=($!)
  wait_until 20 test -s "$W/$1.port"
}
serve trusted "$W/certs/server.pem" "$W/certs/server.key"
serve untrusted "$W/certs/self.pem" "$W/certs/self.key"
PORT=$(cat "$W/trusted.port")
BAD_PORT=$(cat "$W/untrusted.port")
BASE=https://127.0.0.1:$PORT

# ------------------------------------------------------------------ releases

start=$SECONDS
for v in 0.1.0 0.2.0; do
  RCH_RELEASE_BASE_URL=$BASE/releases RCH_MINISIGN_SECRET_KEY=$W/key.sec RCH_RELEASE_BUILD_DIR=$W/build \
    bash "$RCH_SOURCE_DIR/scripts/make-release.sh" "$v" "$SRV/releases/v$v" 2>"$W/make-release.err" ||
    fail "make-release $v: $(cat "$W/make-release.err")"
done
echo "built releases 0.1.0 and 0.2.0 in $((SECONDS - start)) s" >&2
bash "$RCH_SOURCE_DIR/scripts/make-releases-index.sh" "$SRV/releases" 2>/dev/null || fail "make-releases-index"
TAR2=rch-v0.2.0-$TARGET.tar.gz
# The real releases plus discovery-only ones (no binaries), listed out of order:
# a beta, a nightly, a draft newer than all, and a tag that is no version.
python3 - "$SRV/releases" <<'EOF'
import json, sys
d = sys.argv[1]
real = json.load(open(d + "/releases.json"))
def stub(tag, prerelease=False, draft=False):
    return {"tag_name": tag, "name": "rch " + tag, "prerelease": prerelease, "draft": draft,
            "body": "notes of " + tag, "published_at": "2025-01-01T00:00:00Z", "assets": []}
stubs = [stub("v0.3.0-beta.1", prerelease=True), stub("v0.4.0-nightly.20250101", prerelease=True),
         stub("v9.0.0", draft=True), stub("latest-build")]
json.dump([real[1], stubs[0], stubs[1], real[0], stubs[2], stubs[3]], open(d + "/all.json", "w"), indent=1)
EOF

# ------------------------------------------------------------------ rch home with 0.1.0 by hand

export RCH_CONFIG_DIR=$W/cfg RCH_STATE_DIR=$W/state RCH_DATA_DIR=$W/data RCH_HOME=$W/home RCH_CACHE_DIR=$W/cache
export NO_COLOR=1
unset RCH_LOG_LEVEL RCH_RELEASE_URL RCH_MOCK_SSH
mkdir -p "$RCH_CONFIG_DIR" "$RCH_HOME/versions/v0.1.0" "$RCH_HOME/bin" "$W/cfg-nokey" "$W/cfg-noca"
cp "$RCH_TESTBED_DIR/workers.toml" "$RCH_TESTBED_DIR/known_hosts" "$RCH_CONFIG_DIR/"
: >"$RCH_CONFIG_DIR/ssh_config"
# write_config DIR [KEY [CA]]
write_config() {
  cat >"$1/config.toml" <<EOF
[defaults]
known_hosts = "$RCH_CONFIG_DIR/known_hosts"
ssh_config = "$RCH_CONFIG_DIR/ssh_config"

[update]
url = "$BASE/releases/all.json"
minisign_pubkey = "${2:-}"
ca_file = "${3:-}"
keep = 3
connect_timeout = 5
transfer_timeout = 60
EOF
}
write_config "$RCH_CONFIG_DIR" "$PUBKEY" "$W/certs/ca.pem"
write_config "$W/cfg-nokey" "" "$W/certs/ca.pem"
write_config "$W/cfg-noca" "$PUBKEY" ""

tar -xzf "$SRV/releases/v0.1.0/rch-v0.1.0-$TARGET.tar.gz" -C "$RCH_HOME/versions/v0.1.0"
ln -s versions/v0.1.0 "$RCH_HOME/current"
for b in rch rchd rch-wkr; do ln -s "../current/$b" "$RCH_HOME/bin/$b"; done
U=$RCH_HOME/bin/rch
is_installed 0.1.0

echo "--- check: the newest release per channel"
expect_exit 0 "$U" update --check --json
jcheck "$OUT" '
assert d["current_version"] == "0.1.0" and d["latest_version"] == "0.2.0" and d["update_available"] is True, d
assert d["release_notes"].startswith("# rch 0.2.0"), d["release_notes"]
names = [a["name"] for a in d["assets"]]
assert "rch-v0.2.0-x86_64-unknown-linux-gnu.tar.gz" in names and "checksums.txt.minisig" in names, names
assert all(a["browser_download_url"].startswith("https://127.0.0.1:") and a["size"] > 0 for a in d["assets"])'
expect_exit 0 "$U" update --check
contains "$OUT" "Current version: 0.1.0"
contains "$OUT" "Latest version:  0.2.0 (stable channel)"
contains "$OUT" "Update available: 0.1.0 -> 0.2.0"
contains "$OUT" "# rch 0.2.0"
expect_exit 0 "$U" update --check --json --channel beta
jcheck "$OUT" 'assert d["latest_version"] == "0.3.0-beta.1" and d["update_available"] and d["prerelease"], d'
expect_exit 0 "$U" update --check --json --channel nightly
jcheck "$OUT" 'assert d["latest_version"] == "0.4.0-nightly.20250101" and d["update_available"], d'
expect_exit 0 "$U" update --check --json --version v0.1.0
jcheck "$OUT" 'assert d["latest_version"] == "0.1.0" and d["update_available"] is False, d'
expect_exit 1 "$U" update --check --version 0.9.9
contains "$ERR" "no release 0.9.9 at $BASE/releases/all.json"
# config.toml's channel is the default; RCH_RELEASE_URL beats update.url and may be one release object.
sed -i 's/^\[update\]$/[update]\nchannel = "beta"/' "$RCH_CONFIG_DIR/config.toml"
expect_exit 0 "$U" update --check --json
jcheck "$OUT" 'assert d["latest_version"] == "0.3.0-beta.1", d'
RCH_RELEASE_URL=$BASE/releases/v0.1.0/release.json expect_exit 0 "$U" update --check --json
jcheck "$OUT" 'assert d["latest_version"] == "0.1.0" and not d["update_available"], d'
write_config "$RCH_CONFIG_DIR" "$PUBKEY" "$W/certs/ca.pem"
# A channel user file replaces the built-in and receives it as builtin.
mkdir -p "$W/scripts/hooks"
cat >"$W/scripts/hooks/channels.lua" <<'EOF'
return function(ctx, builtin)
  if ctx.channel == "stable" then
    for _, r in ipairs(ctx.releases) do
      if r.version == "0.1.0" then return r end
    end
  end
  return builtin(ctx)
end
EOF
expect_exit 0 "$U" --script-dir "$W/scripts" update --check --json
jcheck "$OUT" 'assert d["latest_version"] == "0.1.0", d'
expect_exit 0 "$U" --script-dir "$W/scripts" update --check --json --channel nightly
jcheck "$OUT" 'assert d["latest_version"] == "0.4.0-nightly.20250101", d'

echo "--- TLS: an untrusted server, and our CA without ca_file, are refused"
RCH_RELEASE_URL=https://127.0.0.1:$BAD_PORT/releases/all.json expect_exit 1 "$U" update --check
contains "$ERR" "TLS certificate of https://127.0.0.1:$BAD_PORT/releases/all.json not trusted"
RCH_CONFIG_DIR=$W/cfg-noca expect_exit 1 "$U" update --check
contains "$ERR" "not trusted"
# The download itself too: a release list served by the trusted server whose
# assets point at the untrusted one.
sed "s#$BASE/#https://127.0.0.1:$BAD_PORT/#g" "$SRV/releases/v0.2.0/release.json" >"$SRV/bad/untrusted-assets.json"
snap_home >"$W/snap.before"
RCH_RELEASE_URL=$BASE/bad/untrusted-assets.json expect_exit 1 "$U" update --yes
contains "$ERR" "https://127.0.0.1:$BAD_PORT/releases/v0.2.0/"
contains "$ERR" "not trusted"
snap_home | cmp -s - "$W/snap.before" || fail "a refused download changed RCH_HOME"

echo "--- rchd 0.1.0 runs for the rest of the test"
start_rchd
P1=$(rchd_pid)
rchd_is "$P1" 0.1.0

echo "--- dry run changes nothing"
rm -rf "$RCH_CACHE_DIR"
snap_home >"$W/snap.before"
expect_exit 0 "$U" update --dry-run
contains "$OUT" "Would download $BASE/releases/v0.2.0/$TAR2 ("
contains "$OUT" "Would download $BASE/releases/v0.2.0/checksums.txt.minisig ("
contains "$OUT" "Would install rch, rchd, rch-wkr 0.2.0 into $RCH_HOME/versions/v0.2.0"
contains "$OUT" "Would switch $RCH_HOME/current: versions/v0.1.0 -> versions/v0.2.0"
contains "$OUT" "Would drain rchd (pid $P1"
contains "$OUT" "nothing was changed"
expect_exit 0 "$U" update --dry-run --json --fleet
jcheck "$OUT" '
assert d["dry_run"] and d["from_version"] == "0.1.0" and d["to_version"] == "0.2.0" and d["action"] == "upgrade", d
assert d["downloads"][0]["url"].endswith("/v0.2.0/rch-v0.2.0-x86_64-unknown-linux-gnu.tar.gz"), d
assert d["daemon"]["running"] and d["fleet"]["workers"] == 4, d'
snap_home | cmp -s - "$W/snap.before" || fail "--dry-run changed RCH_HOME: $(snap_home | diff "$W/snap.before" - || true)"
[[ ! -e $RCH_CACHE_DIR ]] || fail "--dry-run created the cache dir $RCH_CACHE_DIR"
rchd_is "$P1" 0.1.0

echo "--- no terminal and no --yes: refused"
expect_exit 1 "$U" update </dev/null
contains "$ERR" "pass --yes"
snap_home | cmp -s - "$W/snap.before" || fail "a refused update changed RCH_HOME"

echo "--- bad releases are refused before anything is installed"
# bad NAME: $SRV/bad/NAME, a copy of release 0.2.0 to be broken by the caller.
bad() {
  rm -rf "${SRV:?}/bad/$1"
  cp -r "$SRV/releases/v0.2.0" "$SRV/bad/$1"
  rm -f "$SRV/bad/$1/.make-release.lock"
  BD=$SRV/bad/$1
}
# rehash DIR: the tarball's .sha256 and checksums.txt line made to match it.
rehash() {
  (cd "$1" && sha256sum "$TAR2" >"$TAR2.sha256" && sha256sum RELEASE_NOTES.md "$TAR2" >checksums.txt)
}
# sign DIR SECRET COMMENT
sign() { minisign -S -s "$2" -m "$1/checksums.txt" -x "$1/checksums.txt.minisig" -t "$3" </dev/null >/dev/null; }
# publish DIR [SIZE_DELTA]: DIR/release.json lists DIR's assets at their sizes (+ delta for the tarball).
publish() {
  python3 - "$1" "$BASE/bad/$(basename "$1")" "${2:-0}" "$SRV/releases/v0.2.0/release.json" <<'EOF'
import json, os, sys
d, base, delta, orig = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rel = json.load(open(orig))
assets = []
names = [a["name"] for a in rel["assets"]] + ["checksums.txt.sig"]
for name in names:
    p = os.path.join(d, name)
    if not os.path.exists(p):
        continue
    size = os.path.getsize(p) + (delta if name.endswith(".tar.gz") else 0)
    assets.append({"name": name, "size": size, "browser_download_url": base + "/" + name})
rel["assets"] = assets
json.dump(rel, open(os.path.join(d, "release.json"), "w"), indent=1)
EOF
}
# evil_tarball DIR KIND: the 0.2.0 files plus one bad entry (../x, /abs or a symlink).
evil_tarball() {
  python3 - "$SRV/releases/v0.2.0/$TAR2" "$1/$TAR2" "$2" <<'EOF'
import io, sys, tarfile
src, dst, kind = sys.argv[1:]
with tarfile.open(src) as t, tarfile.open(dst, "w:gz", format=tarfile.GNU_FORMAT) as out:
    members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    evil = tarfile.TarInfo({"dotdot": "../x", "abs": "/abs", "symlink": "link"}[kind])
    if kind == "symlink":
        evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
        out.addfile(evil)
    else:
        evil.size = 5
        out.addfile(evil, io.BytesIO(b"evil\n"))
    for m, data in members:
        out.addfile(m, io.BytesIO(data))
EOF
}
# refused NAME PATTERN: rch update from bad/NAME fails naming PATTERN; nothing changed, rchd untouched.
refused() {
  rm -rf "$RCH_CACHE_DIR"
  snap_home loose >"$W/snap.before"
  RCH_RELEASE_URL=$BASE/bad/$1/release.json expect_exit 1 "$U" update --yes
  contains "$ERR" "$2"
  snap_home loose | cmp -s - "$W/snap.before" ||
    fail "$1: RCH_HOME changed: $(snap_home loose | diff "$W/snap.before" - || true)"
  is_installed 0.1.0
  [[ ! -e $RCH_HOME/versions/v0.2.0 ]] || fail "$1: versions/v0.2.0 exists"
  rchd_is "$P1" 0.1.0
  [[ $(field "$(rq '{"cmd":"status"}')" draining) == false ]] || fail "$1: rchd left draining"
}

bad tampered
python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 1; open(p, "wb").write(b)' "$BD/$TAR2"
publish "$BD"
refused tampered "(downloaded from $BASE/bad/tampered/$TAR2)"
contains "$ERR" "has sha256 $(sha "$BD/$TAR2"), expected $(sha "$SRV/releases/v0.2.0/$TAR2"): refusing it"
RCH_RELEASE_URL=$BASE/bad/tampered/release.json expect_exit 1 "$U" update --yes --log-file "$W/tampered.log"
logged error "$W/tampered.log" "has sha256 $(sha "$BD/$TAR2"), expected $(sha "$SRV/releases/v0.2.0/$TAR2"): refusing it"

bad wrong-sha256
echo "$(sha "$BD/RELEASE_NOTES.md")  $TAR2" >"$BD/$TAR2.sha256"
publish "$BD"
refused wrong-sha256 "$TAR2.sha256 of v0.2.0 says $(sha "$BD/RELEASE_NOTES.md") but checksums.txt says"

bad checksums-mismatch
sed -i "s/^[0-9a-f]*  $TAR2\$/$(sha "$BD/RELEASE_NOTES.md")  $TAR2/" "$BD/checksums.txt"
sign "$BD" "$W/key.sec" "rch 0.2.0"
publish "$BD"
refused checksums-mismatch "but checksums.txt says $(sha "$BD/RELEASE_NOTES.md")"

# A signed checksums.txt naming the tarball twice: a bogus first line, the
# real one last. Whichever line "wins", the list is ambiguous: refused.
bad ambiguous-checksums
{ echo "$(sha "$BD/RELEASE_NOTES.md")  $TAR2"; cat "$BD/checksums.txt"; } >"$BD/checksums.new"
mv "$BD/checksums.new" "$BD/checksums.txt"
sign "$BD" "$W/key.sec" "rch 0.2.0"
publish "$BD"
refused ambiguous-checksums "checksums.txt of v0.2.0 lists $TAR2 twice (lines 1 and 3): refusing an ambiguous checksum list"

bad bad-signature
python3 - "$BD/checksums.txt.minisig" <<'EOF'
import base64, sys
p = sys.argv[1]
lines = open(p).read().split("\n")
sig = bytearray(base64.b64decode(lines[1]))
sig[20] ^= 1  # inside the Ed25519 signature, after algorithm and key id
lines[1] = base64.b64encode(bytes(sig)).decode()
open(p, "w").write("\n".join(lines))
EOF
publish "$BD"
refused bad-signature "checksums.txt of v0.2.0: signature verification failed"

bad other-key
sign "$BD" "$W/other.sec" "rch 0.2.0"
publish "$BD"
refused other-key "signature verification failed"

bad other-version
sign "$BD" "$W/key.sec" "rch 0.1.0"
publish "$BD"
refused other-version "trusted comment \"rch 0.1.0\" does not name rch 0.2.0"

bad unsigned
rm "$BD/checksums.txt.minisig"
publish "$BD"
refused unsigned "release v0.2.0 has no checksums.txt.minisig (or checksums.txt.sig), but update.minisign_pubkey is configured"

# The spec's name, checksums.txt.sig, is read too; when both are present both must verify.
bad sig-by-other-key
mv "$BD/checksums.txt.minisig" "$BD/checksums.txt.sig"
minisign -S -s "$W/other.sec" -m "$BD/checksums.txt" -x "$BD/checksums.txt.sig" -t "rch 0.2.0" </dev/null >/dev/null
publish "$BD"
refused sig-by-other-key "signature verification failed (checksums.txt.sig)"
bad both-one-bad
minisign -S -s "$W/other.sec" -m "$BD/checksums.txt" -x "$BD/checksums.txt.sig" -t "rch 0.2.0" </dev/null >/dev/null
publish "$BD"
refused both-one-bad "signature verification failed (checksums.txt.sig)"

bad oversized
publish "$BD" -100
refused oversized "$TAR2"

bad wrong-binaries
cp "$SRV/releases/v0.1.0/rch-v0.1.0-$TARGET.tar.gz" "$BD/$TAR2"
rehash "$BD"
sign "$BD" "$W/key.sec" "rch 0.2.0"
publish "$BD"
refused wrong-binaries "--version printed 'rch 0.1.0', expected 'rch 0.2.0'"

for kind in dotdot abs symlink; do
  bad "$kind"
  evil_tarball "$BD" "$kind"
  rehash "$BD"
  sign "$BD" "$W/key.sec" "rch 0.2.0"
  publish "$BD"
  refused "$kind" "refusing $RCH_CACHE_DIR/downloads/v0.2.0/$TAR2"
  case $kind in
    dotdot) contains "$ERR" "../x" ;;
    abs) contains "$ERR" "/abs" ;;
    symlink) contains "$ERR" "link" ;;
  esac
  [[ ! -e $W/x && ! -e /abs && ! -e $RCH_HOME/link ]] || fail "$kind: the bad entry was written"
done

echo "--- a held update.lock refuses at once, naming the holder"
mkdir -p "$RCH_DATA_DIR"
echo "pid=4242 user=tester host=testhost since=2025-01-01T00:00:00Z purpose=held by update_test.sh" \
  >"$RCH_DATA_DIR/update.lock"
# The subshell takes the lock on fd 9 and becomes the sleep, so killing $! frees it.
(flock 9 && exec sleep 60) 9<"$RCH_DATA_DIR/update.lock" &
HOLDER=$!
BACKGROUND+=("$HOLDER")
# shellcheck disable=SC2016
wait_until 10 bash -c '! flock -n "$1" true' _ "$RCH_DATA_DIR/update.lock"
t0=$SECONDS
expect_exit 1 "$U" update --yes
contains "$ERR" "$RCH_DATA_DIR/update.lock is held by pid 4242 (tester@testhost"
contains "$ERR" "held by update_test.sh"
((SECONDS - t0 < 10)) || fail "the refusal took $((SECONDS - t0)) s"
kill "$HOLDER"
wait "$HOLDER" 2>/dev/null || true
flock -n "$RCH_DATA_DIR/update.lock" true || fail "the test's lock holder did not let go"
is_installed 0.1.0

echo "--- update 0.1.0 -> 0.2.0 while rchd runs a build: drain, stop, install, restart"
rm -rf "$RCH_CACHE_DIR"
# The build runs until the test creates $W/release, so it is certainly still
# active when the update reaches the drain, however slow the machine.
reply=$(rq '{"cmd":"build","argv":["sh","-c","while [ ! -e release ]; do sleep 0.05; done; echo done > build.out"],"cwd":"'"$W"'"}')
[[ $(field "$reply" ok) == true ]] || fail "build not started: $reply"
[[ $(field "$(rq '{"cmd":"status"}')" active_builds) == 1 ]] || fail "no active build"
# Under umask 000: the modes rch gives what it creates must not follow it.
(umask 000 && exec "$U" update --yes --drain-timeout 30 -v --log-file "$W/up.log" >"$W/up.out" 2>"$W/up.err") &
UP=$!
BACKGROUND+=("$UP")
wait_until 60 grep -q "draining rchd (pid $P1): 1 build running" "$W/up.out"
# A second update meanwhile fails at once, naming the first.
expect_exit 1 "$U" update --yes
contains "$ERR" "update.lock is held by pid $UP"
contains "$ERR" "rch update to 0.2.0"
sleep 1
kill -0 "$UP" 2>/dev/null || fail "the update did not wait for the build: $(cat "$W/up.out" "$W/up.err")"
[[ ! -e $W/build.out ]] || fail "the build ended before it was released"
touch "$W/release"
rc=0
wait "$UP" || rc=$?
OUT=$(cat "$W/up.out") ERR=$(cat "$W/up.err")
[[ $rc == 0 ]] || fail "update exited $rc: $OUT $ERR"
[[ -f $W/build.out ]] || fail "rchd was stopped before its build finished"
contains "$OUT" "Release notes for rch 0.2.0:"
contains "$OUT" "verified $TAR2: sha256 matches $TAR2.sha256 and checksums.txt, signed by key"
contains "$OUT" "stopped rchd 0.1.0 (pid $P1)"
contains "$OUT" "rch 0.2.0 installed (was 0.1.0"
is_installed 0.2.0
no_staging
gone "$P1" || fail "the old rchd (pid $P1) still runs"
P2=$(rchd_pid)
[[ $P2 != "$P1" ]] || fail "rchd was not restarted"
rchd_is "$P2" 0.2.0
contains "$OUT" "started rchd 0.2.0 (pid $P2)"
# update.md's logging requirements, at their levels.
logged info "$W/up.log" "update check: current version 0.1.0, latest 0.2.0 (stable channel)"
grep -qE "^\[[0-9T:.-]+ info\] downloaded $TAR2: [0-9.]+ [KM]?B of [0-9.]+ [KM]?B \([0-9.]+ [KM]?B/s\)$" "$W/up.log" ||
  fail "no download progress in $W/up.log: $(cat "$W/up.log")"
logged info "$W/up.log" "verified $TAR2: sha256 matches $TAR2.sha256 and checksums.txt, signed by key"
logged info "$W/up.log" "draining rchd (pid $P1): 1 build running"
logged info "$W/up.log" "installed rch 0.2.0: $RCH_HOME/current -> versions/v0.2.0 (backup: versions/v0.1.0, for rch update --rollback)"
[[ $(versions_list) == "v0.1.0 v0.2.0" ]] || fail "versions: $(versions_list)"
python3 - "$RCH_HOME" <<'EOF' || fail "manifest/state check failed"
import hashlib, json, sys
home = sys.argv[1]
m = json.load(open(home + "/versions/v0.2.0/manifest.json"))
assert m["version"] == "0.2.0" and m["signature"] == "verified", m
for b in ("rch", "rchd", "rch-wkr", "RELEASE_NOTES.md"):
    data = open(home + "/versions/v0.2.0/" + b, "rb").read()
    assert m["files"][b]["sha256"] == hashlib.sha256(data).hexdigest(), b
s = json.load(open(home + "/update-state.json"))
assert s["current"] == "0.2.0" and s["previous"] == "0.1.0" and "rchd_stopped" not in s, s
EOF
[[ -f $RCH_CACHE_DIR/downloads/v0.2.0/$TAR2 ]] || fail "the tarball is not in the cache"
# mode_is MODE PATH…: the README's table of local modes.
mode_is() {
  local want=$1 p
  shift
  for p in "$@"; do [[ $(stat -c %a "$p") == "$want" ]] || fail "$p has mode $(stat -c %a "$p"), want $want"; done
}
mode_is 755 "$RCH_HOME/versions" "$RCH_HOME/versions/v0.2.0" "$RCH_HOME"/versions/v0.2.0/{rch,rchd,rch-wkr}
mode_is 700 "$RCH_CACHE_DIR" "$RCH_CACHE_DIR/downloads" "$RCH_CACHE_DIR/downloads/v0.2.0"
mode_is 600 "$RCH_HOME/rchd.sock"
expect_exit 0 "$U" update --check --json
jcheck "$OUT" 'assert d["current_version"] == "0.2.0" and d["update_available"] is False, d'
expect_exit 0 "$U" update --yes
contains "$OUT" "rch 0.2.0 is already up to date"
expect_exit 0 "$U" update --yes --json
jcheck "$OUT" 'assert d["ok"] and d["status"] == "up_to_date" and d["action"] == "none", d'
rchd_is "$P2" 0.2.0

echo "--- --verify"
expect_exit 0 "$U" update --verify
contains "$OUT" "rch 0.2.0 in $RCH_HOME: every binary matches its manifest and the links are intact"
cp "$RCH_HOME/versions/v0.2.0/rch-wkr" "$W/rch-wkr.good"
printf 'x' >>"$RCH_HOME/versions/v0.2.0/rch-wkr"
expect_exit 1 "$U" update --verify
contains "$ERR" "$RCH_HOME/versions/v0.2.0/rch-wkr has sha256 $(sha "$RCH_HOME/versions/v0.2.0/rch-wkr"), manifest says"
expect_exit 1 "$U" update --verify --json
jcheck "$OUT" '
assert d["ok"] is False and d["current_version"] == "0.2.0", d
bad = [f["name"] for f in d["files"] if not f["ok"]]
assert bad == ["rch-wkr"], bad'
cp "$W/rch-wkr.good" "$RCH_HOME/versions/v0.2.0/rch-wkr"
ln -sfn ../current/rch "$RCH_HOME/bin/rch-wkr"
expect_exit 1 "$U" update --verify
contains "$ERR" "$RCH_HOME/bin/rch-wkr is a link to ../current/rch, expected a link to ../current/rch-wkr"
ln -sfn ../current/rch-wkr "$RCH_HOME/bin/rch-wkr"
expect_exit 0 "$U" update --verify --json
jcheck "$OUT" 'assert d["ok"] is True and d["findings"] == [] and len(d["files"]) == 4, d'

echo "--- --rollback"
snap_home >"$W/snap.before"
expect_exit 0 "$U" update --rollback --dry-run
contains "$OUT" "Would switch $RCH_HOME/current: versions/v0.2.0 -> versions/v0.1.0"
expect_exit 1 "$U" update --rollback </dev/null
contains "$ERR" "pass --yes"
snap_home | cmp -s - "$W/snap.before" || fail "a rollback dry run or refusal changed RCH_HOME"
expect_exit 0 "$U" update --rollback --yes
contains "$OUT" "rolled back rch 0.2.0 -> 0.1.0"
is_installed 0.1.0
P3=$(rchd_pid)
[[ $P3 != "$P2" ]] || fail "rollback did not restart rchd"
rchd_is "$P3" 0.1.0
jcheck "$(cat "$RCH_HOME/update-state.json")" 'assert d["current"] == "0.1.0" and d["previous"] == "0.2.0", d'

echo "--- update again with --json --fleet (cached tarball), rch-wkr 0.2.0 deployed to the testbed"
reset_workers
expect_exit 0 "$U" update --yes --json --fleet
jcheck "$OUT" '
assert d["ok"] and d["status"] == "installed" and d["from_version"] == "0.1.0" and d["to_version"] == "0.2.0", d
assert d["signature"] == "verified" and d["tarball"]["cached"] is True, d
assert d["daemon"]["was_running"] and d["daemon"]["restarted"] and d["daemon"]["new_version"] == "0.2.0", d
f = d["fleet"]
assert f["exit_code"] == 0 and f["result"]["target_version"] == "0.2.0", f
assert sorted(w["status"] for w in f["result"]["workers"]) == ["Completed"] * 4, f'
is_installed 0.2.0
for k in 1 2 3 4; do
  root=$RCH_TESTBED_DIR/w$k/root
  [[ $(readlink "$root/current") == versions/v0.2.0 ]] || fail "w$k: current -> $(readlink "$root/current")"
  [[ $("$root/bin/rch-wkr" --version) == "rch-wkr 0.2.0" ]] || fail "w$k: rch-wkr is not 0.2.0"
  cmp -s "$root/versions/v0.2.0/rch-wkr" "$RCH_HOME/versions/v0.2.0/rch-wkr" || fail "w$k: not the released rch-wkr"
done
reset_workers
P4=$(rchd_pid)
rchd_is "$P4" 0.2.0

echo "--- downgrades only with --version; --no-restart leaves rchd alone"
RCH_RELEASE_URL=$BASE/releases/v0.1.0/release.json expect_exit 1 "$U" update --yes
contains "$ERR" "rch 0.2.0 is newer than the newest stable release 0.1.0: not downgrading (pass --version 0.1.0"
is_installed 0.2.0
expect_exit 0 "$U" update --yes --version v0.1.0 --no-restart
contains "$ERR" "rchd (pid $P4) still runs the previous version (--no-restart)"
is_installed 0.1.0
rchd_is "$P4" 0.2.0
# --verify sees the daemon that still runs the other version.
expect_exit 1 "$U" update --verify
contains "$ERR" "rchd (pid $P4) still runs 0.2.0 while 0.1.0 is installed: restart it"
expect_exit 0 "$U" update --yes
is_installed 0.2.0
P5=$(rchd_pid)
[[ $P5 != "$P4" ]] || fail "rchd not restarted"
rchd_is "$P5" 0.2.0

echo "--- --force reinstalls the current version; without a key only checksums; old versions pruned"
for v in 0.0.1 0.0.2; do cp -r "$RCH_HOME/versions/v0.1.0" "$RCH_HOME/versions/v$v"; done
RCH_CONFIG_DIR=$W/cfg-nokey expect_exit 0 "$U" update --yes --force --json --log-file "$W/nokey.log"
logged warning "$W/nokey.log" "update.minisign_pubkey is not configured: only checksums were verified"
contains "$ERR" "update.minisign_pubkey is not configured: only checksums were verified for $TAR2 (no signature check; checksums.txt.minisig present but not checked)"
jcheck "$OUT" '
assert d["ok"] and d["action"] == "reinstall" and d["signature"] == "unsigned", d
assert d["removed_versions"] == ["0.0.1"], d'
is_installed 0.2.0
[[ $(versions_list) == "v0.0.2 v0.1.0 v0.2.0" ]] || fail "versions after pruning: $(versions_list)"
expect_exit 0 "$U" update --verify
no_staging

echo "--- kill -9 while draining: rch keeps working, the next run cleans up and finishes"
P6=$(rchd_pid)
rm -f "$W/release" "$W/build.out"
reply=$(rq '{"cmd":"build","argv":["sh","-c","while [ ! -e release ]; do sleep 0.05; done"],"cwd":"'"$W"'"}')
[[ $(field "$reply" ok) == true ]] || fail "build not started: $reply"
"$U" update --yes --version 0.1.0 --drain-timeout 60 >"$W/up.out" 2>"$W/up.err" &
UP=$!
BACKGROUND+=("$UP")
wait_until 60 grep -q "draining rchd (pid $P6)" "$W/up.out"
kill -9 "$UP"
wait "$UP" 2>/dev/null || true
is_installed 0.2.0
left=$(find "$RCH_HOME" -maxdepth 1 -name '.staging-*')
[[ -n $left ]] || fail "expected the killed run's staging dir"
flock -n "$RCH_DATA_DIR/update.lock" true || fail "update.lock still held after kill -9"
rchd_is "$P6" 0.2.0
expect_exit 0 "$U" update --yes --version 0.1.0 --drain-timeout 1 --log-file "$W/drain.log"
contains "$ERR" "1 build still running in rchd (pid $P6) after the 1s drain timeout"
logged warning "$W/drain.log" "1 build still running in rchd (pid $P6) after the 1s drain timeout"
is_installed 0.1.0
no_staging
rchd_is "$(rchd_pid)" 0.1.0

echo "--- kill -9 at random moments: every binary is always one complete version"
# The build the forced stop left running still holds its lease: let it end first.
touch "$W/release"
no_builds() { [[ $(field "$(rq '{"cmd":"status"}')" active_builds) == 0 ]]; }
wait_until 20 no_builds
t0=$(date +%s.%N)
expect_exit 0 "$U" update --yes --version 0.2.0
took=$(python3 -c "import sys, time; print(time.time() - float(sys.argv[1]))" "$t0")
echo "an update takes ${took}s" >&2
for frac in 0.05 0.15 0.25 0.35 0.45 0.55 0.65 0.75 0.85 0.95; do
  cur=$(readlink "$RCH_HOME/current")
  other=$([[ $cur == versions/v0.2.0 ]] && echo 0.1.0 || echo 0.2.0)
  "$U" update --yes --version "$other" >/dev/null 2>&1 &
  UP=$!
  sleep "$(python3 -c "print($took * $frac)")"
  kill -9 "$UP" 2>/dev/null || true
  wait "$UP" 2>/dev/null || true
  v=$("$RCH_HOME/bin/rch" --version) || fail "bin/rch does not run after kill -9 at $frac"
  v=${v#rch }
  [[ $v == 0.1.0 || $v == 0.2.0 ]] || fail "bin/rch reports '$v'"
  is_installed "$v"
done
expect_exit 0 "$U" update --yes --version 0.2.0 --force
is_installed 0.2.0
no_staging
# rchd runs again at the end even when a killed run had stopped it.
rchd_is "$(rchd_pid)" 0.2.0
jcheck "$(cat "$RCH_HOME/update-state.json")" 'assert "rchd_stopped" not in d, d'
expect_exit 0 "$U" update --verify

echo "--- a release signed only as checksums.txt.sig (the spec's name) installs with the key"
bad sig-only
mv "$BD/checksums.txt.minisig" "$BD/checksums.txt.sig"
publish "$BD"
RCH_RELEASE_URL=$BASE/bad/sig-only/release.json expect_exit 0 "$U" update --yes --force --json
jcheck "$OUT" 'assert d["ok"] and d["signature"] == "verified" and d["to_version"] == "0.2.0", d'
is_installed 0.2.0

echo "--- rchd run by systemd is started again through systemctl; the rch first on PATH is named"
# As the units set it (packaging/systemd): INVOCATION_ID from systemd, RCHD_UNIT and its scope from the unit.
"$RCH_HOME/bin/rchd" stop --root "$RCH_HOME" 2>/dev/null || fail "rchd stop failed"
INVOCATION_ID=first RCHD_UNIT=rchd.service RCHD_UNIT_SCOPE=user start_rchd
P7=$(rchd_pid)
# systemd is not PID 1 here: a systemctl stand-in records its arguments and
# starts the unit's daemon as systemd would, with the unit's environment.
mkdir -p "$W/sysbin" "$W/otherbin"
cat >"$W/sysbin/systemctl" <<EOF
#!/bin/sh
echo "\$*" >>"$W/systemctl.log"
[ "\$*" = "--user start rchd.service" ] || exit 1
INVOCATION_ID=second RCHD_UNIT=rchd.service RCHD_UNIT_SCOPE=user exec "$RCH_HOME/bin/rchd" run --root "$RCH_HOME"
EOF
printf '#!/bin/sh\necho another rch\n' >"$W/otherbin/rch"
chmod +x "$W/sysbin/systemctl" "$W/otherbin/rch"
PATH=$W/otherbin:$W/sysbin:$PATH expect_exit 0 "$U" update --yes --force
contains "$OUT" "stopped rchd 0.2.0 (pid $P7) of systemd unit rchd.service (user)"
[[ $(cat "$W/systemctl.log") == "--user start rchd.service" ]] || fail "systemctl calls: $(cat "$W/systemctl.log")"
P8=$(rchd_pid)
[[ $P8 != "$P7" ]] || fail "rchd was not restarted"
rchd_is "$P8" 0.2.0
tr '\0' '\n' <"/proc/$P8/environ" | grep -qx INVOCATION_ID=second || fail "rchd $P8 was not started through systemctl"
[[ $(grep -c "the rch first on PATH is" <<<"$ERR") == 1 ]] || fail "no single PATH note: $ERR"
contains "$ERR" "the rch first on PATH is $W/otherbin/rch, not the one rch update installs ($RCH_HOME/bin/rch): put $RCH_HOME/bin first on PATH"
PATH=$RCH_HOME/bin:$W/otherbin:$W/sysbin:$PATH expect_exit 0 "$U" update --yes --force
[[ $ERR != *"on PATH"* ]] || fail "a PATH note although $RCH_HOME/bin/rch comes first: $ERR"
rchd_is "$(rchd_pid)" 0.2.0

echo "--- usage errors"
expect_exit 2 "$U" update --check --rollback
contains "$ERR" "--check and --rollback cannot be combined"
expect_exit 2 "$U" update --rollback --version 0.1.0
expect_exit 2 "$U" update --channel weekly

echo "PASS"
