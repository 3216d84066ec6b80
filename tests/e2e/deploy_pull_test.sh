#!/usr/bin/env bash
# Against the real sshd testbed: pull mode (--source pull, [deploy] source).
# A release of the testbed's version, built by scripts/make-release.sh and
# minisigned with a key made here, is served over HTTP on 127.0.0.1; each
# worker fetches its tarball with its own curl (or wget) and installs the
# tarball's rch-wkr, byte for byte, with the tarball's sha256 in the
# manifest. An unchanged redeploy skips every worker without a download. A
# bad signature is refused before any worker is touched; a tampered tarball
# (not the signed sha256), and a signed one whose rch-wkr is a symlink or a
# hard link, are refused on the worker with nothing installed and nothing
# left behind; a tarball URL the workers cannot reach, and a
# worker with neither curl nor wget, are preflight issues with a remediation
# (dry run and real run); a worker running this version from other bytes
# keeps them. Over HTTPS, the workers check certificates, and a tarball URL
# that redirects to plain http is refused.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
command -v minisign >/dev/null || fail "minisign is not installed: run scripts/bootstrap.sh"
TARGET=x86_64-unknown-linux-gnu
[[ $(uname -m) == x86_64 ]] || fail "the testbed's release is built for x86_64 only"
SRV=$TMP/srv
mkdir -p "$SRV/releases"
python3 "$RCH_SOURCE_DIR/tests/unit/https_server.py" "$TMP/http.port" "$SRV" --log "$TMP/http.log" \
  >"$TMP/http.out" 2>&1 &
BACKGROUND+=($!)
wait_until 20 test -s "$TMP/http.port"
BASE=http://127.0.0.1:$(cat "$TMP/http.port")

# ---- The release of the testbed's version, signed.
minisign -G -W -p "$TMP/key.pub" -s "$TMP/key.sec" >/dev/null
minisign -G -W -p "$TMP/other.pub" -s "$TMP/other.sec" >/dev/null
# (RCH_TEST_RELEASE_BUILD_DIR: a build dir kept between runs, so that a rerun compiles nothing.
# The agents only: pull mode deploys the tarball's rch-wkr.)
start=$SECONDS
RCH_RELEASE_BASE_URL=$BASE/releases RCH_MINISIGN_SECRET_KEY=$TMP/key.sec RCH_RELEASE_AGENT_ONLY=1 \
  RCH_RELEASE_BUILD_DIR=${RCH_TEST_RELEASE_BUILD_DIR:-$TMP/build} \
  bash "$RCH_SOURCE_DIR/scripts/make-release.sh" "$OWN" "$SRV/releases/v$OWN" 2>"$TMP/make-release.err" ||
  fail "make-release $OWN: $(cat "$TMP/make-release.err")"
echo "built release $OWN in $((SECONDS - start)) s" >&2
bash "$RCH_SOURCE_DIR/scripts/make-releases-index.sh" "$SRV/releases" 2>/dev/null || fail "make-releases-index"
REL=$SRV/releases/v$OWN
TARBALL=rch-v$OWN-$TARGET.tar.gz
TAR_SHA=$(sha_of "$REL/$TARBALL")
mkdir "$TMP/rel" && tar -xzf "$REL/$TARBALL" -C "$TMP/rel" rch-wkr
REL_SHA=$(sha_of "$TMP/rel/rch-wkr")
[[ $REL_SHA != "$OWN_SHA" ]] || fail "the release's rch-wkr is the testbed's own build (not stripped?)"
export TAR_URL=$BASE/releases/v$OWN/$TARBALL
# The workers find no rch-wkr on this controller: nothing could be pushed from here.
[[ ! -e $RCH_HOME/versions ]] || fail "RCH_HOME has versions"

# pull_config [KEY] [EXTRA]: the release list and KEY's public key (default: the signing key).
pull_config() {
  write_config "[update]
url = \"$BASE/releases/releases.json\"
minisign_pubkey = \"$(tail -n 1 "${1:-$TMP/key.pub}")\"
${2:-}"
}
gets() { grep -c "^GET /releases/v$OWN/$TARBALL " "$TMP/http.log" || true; }
transfer_of() {
  K=w$1 python3 -c '
import json, os, sys
w = {w["worker_id"]: w for w in json.loads(sys.stdin.read())["workers"]}[os.environ["K"]]
print([s for s in w["steps"] if s["name"] == "transfer"][0]["output"])' <<<"$OUT"
}
has_tarball_in_manifest() {
  grep -q "\"tarball_sha256\":\"$TAR_SHA\"" "$(root_of "$1")/versions/v$OWN/manifest.json" ||
    fail "w$1: the manifest does not name the tarball: $(cat "$(root_of "$1")/versions/v$OWN/manifest.json")"
}
no_leftovers() {
  local left
  left=$(find "$(root_of "$1")" -name '.rch-pull.*' -o -name '.rch-wkr.part.*')
  [[ -z $left ]] || fail "w$1: left behind: $left"
}

# ---- A signature by another key: refused before any worker is touched.
pull_config "$TMP/other.pub"
snap_all before
deploy 1 --source pull --worker w1,w2,w3,w4
contains "$ERR" "signature verification failed"
same_as before 1 2 3 4
[[ -z $(deployment_dirs) ]] || fail "a deployment was started: $(deployment_dirs)"
(($(gets) == 0)) || fail "a tarball was fetched"

# ---- Pull to three workers: each fetches the tarball itself and installs its rch-wkr.
pull_config
deploy 0 --source pull --worker w1,w2,w3
for k in 1 2 3; do
  installed "$k" "$OWN" "$REL_SHA"
  has_tarball_in_manifest "$k"
  no_leftovers "$k"
  contains "$(transfer_of "$k")" "sent as release tarball fetched by the worker from $TAR_URL"
done
(($(gets) == 3)) || fail "$(gets) GETs of the tarball, want 3 (one per worker): $(cat "$TMP/http.log")"
py '
events = [e for e in audit() if e["event_type"] == "WorkerTransferCompleted"]
assert len(events) == 3, events
for e in events:
    assert e["details"]["sent_as"] == "pull" and e["details"]["url"] == os.environ["TAR_URL"], e
    assert e["details"]["bytes_sent"] == 0, e'

# ---- [deploy] source = "pull" without the flag; unchanged: skipped, nothing fetched.
pull_config "" $'[deploy]\nsource = "pull"'
deploy 0 --worker w1,w2,w3
json 'assert all(st[w]["status"] == "Skipped" for w in ("w1", "w2", "w3")), st'
(($(gets) == 3)) || fail "an unchanged redeploy fetched the tarball"
# fleet stress runs on the simulated fleet, which has no mirror to pull from: it pushes.
expect_exit 0 "$RCH" fleet stress --workers 20 --parallel 4 --json
pull_config

# ---- A tampered tarball (not the signed sha256): refused, nothing installed, nothing left.
cp "$REL/$TARBALL" "$TMP/good.tar.gz"
printf 'x' | dd of="$REL/$TARBALL" bs=1 seek=100 conv=notrunc status=none
deploy 1 --source pull --worker w4
json '
w = st["w4"]
assert w["status"] == "Failed" and w["error"].startswith("transfer: "), w
assert "but the release'"'"'s signed checksums.txt says '"$TAR_SHA"': refusing it" in w["error"], w["error"]'
no_agent 4
[[ -z $(versions_of 4) ]] || fail "w4: versions after the refused tarball: $(versions_of 4)"
no_leftovers 4
cp "$TMP/good.tar.gz" "$REL/$TARBALL"

# ---- A signed release whose rch-wkr is a symlink, or a hard link to another member:
# the worker refuses it, with nothing installed.
for kind in symlink hardlink; do
  h=$SRV/releases/$kind/v$OWN
  mkdir -p "$h" "$TMP/$kind"
  (
    cd "$TMP/$kind" || exit 1
    echo notes >RELEASE_NOTES.md
    if [[ $kind == symlink ]]; then ln -s /etc/passwd rch-wkr; else ln RELEASE_NOTES.md rch-wkr; fi
    tar --format=gnu -cf - RELEASE_NOTES.md rch-wkr | gzip -n >"$h/$TARBALL"
  )
  (cd "$h" && sha256sum "$TARBALL" >"$TARBALL.sha256" && cp "$TARBALL.sha256" checksums.txt &&
    minisign -S -s "$TMP/key.sec" -m checksums.txt -x checksums.txt.minisig -t "rch $OWN" </dev/null >/dev/null)
  sed "s|/releases/v$OWN/|/releases/$kind/v$OWN/|g" "$SRV/releases/releases.json" >"$SRV/releases/$kind.json"
  RCH_RELEASE_URL=$BASE/releases/$kind.json deploy 1 --source pull --worker w4
  KIND=$kind json '
w = st["w4"]
want = {"symlink": "l", "hardlink": "h"}[os.environ["KIND"]]
assert w["status"] == "Failed" and ("is not a regular file (tar type '"'"'%s'"'"')" % want) in w["error"], w'
  no_agent 4
  no_leftovers 4
done

# ---- A tarball URL the workers cannot reach (the list names a port where nothing listens):
# a preflight issue with a remediation, in the dry run and the real run.
python3 - "$SRV/releases/releases.json" "$SRV/releases/unreachable.json" <<'EOF'
import json, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
rel = json.load(open(sys.argv[1]))
for a in rel[0]["assets"]:
    if a["name"].endswith(".tar.gz"):
        a["browser_download_url"] = "http://127.0.0.1:%d/nowhere/%s" % (port, a["name"])
json.dump(rel, open(sys.argv[2], "w"))
EOF
snap_all before
RCH_RELEASE_URL=$BASE/releases/unreachable.json deploy 0 --source pull --worker w4 --dry-run
json '
p = d["predictions"][0]
assert p["action"] == "Blocked", p
issue = [i for i in d["potential_issues"] if i["check"] == "release_url"][0]
assert issue["severity"] == "error" and "cannot fetch http://127.0.0.1:" in issue["issue"], issue
assert "reach the release mirror" in issue["recommendation"], issue'
same_as before 4
RCH_RELEASE_URL=$BASE/releases/unreachable.json deploy 1 --source pull --worker w4
json '
w = st["w4"]
assert w["status"] == "Failed" and w["error"].startswith("preflight: release_url: the worker cannot fetch"), w'
no_agent 4

# with_env K [SETTING]: worker K's sshd restarted with SetEnv SETTING (none: as the testbed made it).
chmod 755 "$TMP"
for k in 1 2 3 4; do cp "$TB/w$k/sshd_config" "$TMP/w${k}_sshd_config.orig"; done
# sshd honours only its first SetEnv line (the testbed's, with the shim dir on PATH): the
# setting joins that line, replacing the variable's value there.
with_env() {
  cp "$TMP/w$1_sshd_config.orig" "$TB/w$1/sshd_config"
  [[ -z ${2:-} ]] || python3 - "$TB/w$1/sshd_config" "$2" <<'EOF_PY'
import sys
path, setting = sys.argv[1], sys.argv[2]
name = setting.split("=", 1)[0] + "="
lines = open(path).read().splitlines()
for i, line in enumerate(lines):
    if line.startswith("SetEnv "):
        lines[i] = " ".join([w for w in line.split() if not w.startswith(name)] + [setting])
        break
else:
    lines.append("SetEnv " + setting)
open(path, "w").write("\n".join(lines) + "\n")
EOF_PY
  "${TESTBED[@]}" stop "$1" "$TB" >/dev/null 2>&1 || true
  "${TESTBED[@]}" start "$1" "$TB" >/dev/null
}
restore_workers() {
  local k
  for k in 1 2 3 4; do cmp -s "$TMP/w${k}_sshd_config.orig" "$TB/w$k/sshd_config" || with_env "$k" || true; done
  deploy_cleanup
}
trap restore_workers EXIT

# ---- A worker with neither curl nor wget (its sshd sets a PATH without them).
mkdir -p "$TMP/nofetch"
for f in /usr/bin/* /bin/*; do
  case ${f##*/} in curl | wget) ;; *) [[ -e $TMP/nofetch/${f##*/} ]] || ln -s "$f" "$TMP/nofetch/${f##*/}" ;; esac
done
chmod 755 "$TMP/nofetch"
with_env 4 "PATH=$TMP/nofetch"
# shellcheck disable=SC2016 # (expanded on the worker)
got=$(on 4 'for t in curl wget sha256sum; do command -v $t; done' || true)
[[ $got == "$TMP/nofetch/sha256sum" ]] || fail "w4 still has curl or wget: $got"
deploy 0 --source pull --worker w4 --dry-run
json '
issue = [i for i in d["potential_issues"] if i["check"] == "fetch_tool"][0]
assert issue["severity"] == "error" and "neither curl nor wget" in issue["issue"], issue
assert "install curl (or wget)" in issue["recommendation"], issue'
deploy 1 --source pull --worker w4
json 'assert st["w4"]["error"].startswith("preflight: fetch_tool: neither curl nor wget"), st["w4"]'
no_agent 4
with_env 4

# ---- Over HTTPS (a test CA the controller and w3's curl trust, w2's does not): the pull
# works on w3; w2 reports the certificate in preflight; a tarball URL that redirects to
# plain http is refused, the release list having come over https.
cnf=$TMP/openssl.cnf
printf '%s\n' '[req]' 'distinguished_name = dn' 'prompt = no' '[dn]' 'CN = rch test' '[ca]' \
  'basicConstraints = critical,CA:TRUE' 'keyUsage = critical,keyCertSign,cRLSign' '[server]' \
  'basicConstraints = critical,CA:FALSE' 'keyUsage = critical,digitalSignature' 'extendedKeyUsage = serverAuth' \
  'subjectAltName = IP:127.0.0.1' >"$cnf"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
(
  cd "$TMP"
  openssl req -x509 -config "$cnf" -extensions ca -days 2 -subj "/CN=rch pull test CA" "${ec[@]}" \
    -keyout ca.key -out ca.pem
  openssl req -new -config "$cnf" -subj /CN=127.0.0.1 "${ec[@]}" -keyout server.key -out server.csr
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 -extfile "$cnf" \
    -extensions server -out server.pem
) >"$TMP/openssl.log" 2>&1 || fail "openssl: $(cat "$TMP/openssl.log")"
chmod 644 "$TMP/ca.pem"
python3 "$RCH_SOURCE_DIR/tests/unit/https_server.py" "$TMP/https.port" "$SRV" --cert "$TMP/server.pem" \
  --key "$TMP/server.key" --log "$TMP/https.log" >"$TMP/https.out" 2>&1 &
BACKGROUND+=($!)
wait_until 20 test -s "$TMP/https.port"
TLS=https://127.0.0.1:$(cat "$TMP/https.port")
python3 - "$SRV/releases/releases.json" "$BASE" "$TLS" <<'EOF'
import json, sys, urllib.parse
path, http, tls = sys.argv[1:]
rel = json.load(open(path))
for a in rel[0]["assets"]:
    a["browser_download_url"] = a["browser_download_url"].replace(http, tls)
json.dump(rel, open(path.replace("releases.json", "https.json"), "w"))
for a in rel[0]["assets"]:
    if a["name"].endswith(".tar.gz"):
        a["browser_download_url"] = tls + "/redirect?to=" + urllib.parse.quote(a["browser_download_url"].replace(tls, http))
json.dump(rel, open(path.replace("releases.json", "redirect.json"), "w"))
EOF
pull_config "" "ca_file = \"$TMP/ca.pem\""
with_env 3 "CURL_CA_BUNDLE=$TMP/ca.pem"
find "$(root_of 2)" "$(root_of 3)" -mindepth 1 -delete
RCH_RELEASE_URL=$TLS/releases/https.json deploy 1 --source pull --worker w2,w3
installed 3 "$OWN" "$REL_SHA"
has_tarball_in_manifest 3
contains "$(transfer_of 3)" "fetched by the worker from $TLS/releases/v$OWN/$TARBALL"
json '
w = st["w2"]
assert w["status"] == "Failed" and w["error"].startswith("preflight: release_url: the worker cannot fetch https://"), w
assert "certificate" in w["error"], w["error"]'
no_agent 2
find "$(root_of 3)" -mindepth 1 -delete
before=$(gets)
RCH_RELEASE_URL=$TLS/releases/redirect.json deploy 1 --source pull --worker w3
json '
w = st["w3"]
assert w["status"] == "Failed" and w["error"].startswith("preflight: release_url: the worker cannot fetch https://"), w'
no_agent 3
(($(gets) == before)) || fail "the refused redirect reached the http server: $(cat "$TMP/http.log")"
with_env 3
pull_config

# ---- A worker running this version from other bytes (pushed from another build) keeps them.
stage "$OWN" "$RCH_WKR"
deploy 0 --source push --worker w4
installed 4 "$OWN" "$OWN_SHA"
unstage "$OWN"
deploy 1 --source pull --worker w4
json '
w = st["w4"]
assert w["status"] == "Failed" and "same_version: the worker runs" in w["error"], w'
installed 4 "$OWN" "$OWN_SHA"
no_leftovers 4
echo "ok"
