#!/usr/bin/env bash
# E2E test of scripts/make-release.sh and make-releases-index.sh: builds
# releases 9.8.0 (signed with a fresh minisign key) and 9.9.0-beta.1 (custom
# notes, unsigned) from this tree, then checks the artifact contract: tarball
# entries and determinism, binaries' --version, .sha256 and checksums.txt,
# the minisign signature and trusted comment, release.json, the releases.json
# order, and that bad versions are refused.
set -euo pipefail

: "${RCH_SOURCE_DIR:?set RCH_SOURCE_DIR to the rch source tree}"
mk_release="$RCH_SOURCE_DIR/scripts/make-release.sh"
mk_index="$RCH_SOURCE_DIR/scripts/make-releases-index.sh"
target=x86_64-unknown-linux-gnu

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
command -v minisign >/dev/null || fail "minisign is not installed: run scripts/bootstrap.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rel="$tmp/releases"
export RCH_RELEASE_BASE_URL=http://127.0.0.1:8765/releases/

minisign -G -W -p "$tmp/key.pub" -s "$tmp/key.sec" >/dev/null

# release VERSION [VAR=VALUE…]: runs make-release.sh into $rel/vVERSION, stderr in $tmp/err.
release() {
  local v=$1
  shift
  env "$@" bash "$mk_release" "$v" "$rel/v$v" 2>"$tmp/err" || fail "make-release $v failed: $(cat "$tmp/err")"
}

start=$SECONDS
release 9.8.0 RCH_MINISIGN_SECRET_KEY="$tmp/key.sec"
cp "$rel/v9.8.0/checksums.txt" "$rel/v9.8.0/rch-v9.8.0-$target.tar.gz" "$tmp/"
echo "built 9.8.0 in $((SECONDS - start)) s" >&2
# Idempotent rerun, right away so concurrent edits of the tree are unlikely to
# slip in between: it must be quick (nothing to compile) and, from the same
# binaries, byte-identical.
start=$SECONDS
release 9.8.0 RCH_MINISIGN_SECRET_KEY="$tmp/key.sec"
echo "rebuilt 9.8.0 in $((SECONDS - start)) s" >&2
if ! cmp -s "$tmp/checksums.txt" "$rel/v9.8.0/checksums.txt"; then
  mkdir "$tmp/first" "$tmp/second"
  tar -xzf "$tmp/rch-v9.8.0-$target.tar.gz" -C "$tmp/first"
  tar -xzf "$rel/v9.8.0/rch-v9.8.0-$target.tar.gz" -C "$tmp/second"
  diff -r "$tmp/first" "$tmp/second" >/dev/null && fail "same files, different tarball: packaging is not deterministic"
  echo "note: the source tree changed between the two builds; byte-identity not checked" >&2
fi
start=$SECONDS
printf '# rch 9.9.0-beta.1\n\n- "quoted" notes with ünïcode\n' >"$tmp/notes.md"
release 9.9.0-beta.1 -u RCH_MINISIGN_SECRET_KEY RCH_RELEASE_NOTES="$tmp/notes.md"
grep -q "NOT signed" "$tmp/err" || fail "an unsigned release must say so on stderr: $(cat "$tmp/err")"
echo "built 9.9.0-beta.1 in $((SECONDS - start)) s" >&2

# --- 9.8.0: files, tarball, binaries -----------------------------------------
d="$rel/v9.8.0"
tarball="rch-v9.8.0-$target.tar.gz"
sorted() { printf '%s\n' "$@" | LC_ALL=C sort | tr '\n' ' '; }
files=$(find "$d" -mindepth 1 -maxdepth 1 ! -name '.*' -printf '%f\n' | LC_ALL=C sort | tr '\n' ' ')
want=$(sorted RELEASE_NOTES.md checksums.txt checksums.txt.minisig "$tarball" "$tarball.sha256" release.json)
[[ $files == "$want" ]] || fail "release dir holds '$files', want '$want'"

entries=$(tar -tzf "$d/$tarball" | tr '\n' ' ')
[[ $entries == "RELEASE_NOTES.md rch rch-wkr rchd " ]] || fail "tarball entries: '$entries'"
TZ=UTC tar --full-time -tvzf "$d/$tarball" | while read -r mode owner _size day time name; do
  [[ $owner == 0/0 && $day == 1970-01-01 && $time == 00:00:00 ]] || fail "tar entry $name: owner $owner, mtime $day $time"
  case $name in
    RELEASE_NOTES.md) [[ $mode == -rw-r--r-- ]] || fail "$name mode $mode" ;;
    *) [[ $mode == -rwxr-xr-x ]] || fail "$name mode $mode" ;;
  esac
done
# gzip -n: header flags (no file name) and mtime all zero.
[[ $(od -An -tu1 -j3 -N5 "$d/$tarball" | tr -s ' ') == " 0 0 0 0 0" ]] || fail "gzip header carries a name or time"

mkdir "$tmp/x"
tar -xzf "$d/$tarball" -C "$tmp/x"
for b in rch rchd rch-wkr; do
  out=$("$tmp/x/$b" --version) || fail "$b --version failed"
  [[ $out == "$b 9.8.0" ]] || fail "$b --version printed '$out'"
  if readelf -S "$tmp/x/$b" | grep -q '\.symtab'; then fail "$b is not stripped"; fi
done
cmp -s "$tmp/x/RELEASE_NOTES.md" "$d/RELEASE_NOTES.md" || fail "RELEASE_NOTES.md in the tarball differs"
grep -q '^# rch 9.8.0' "$d/RELEASE_NOTES.md" || fail "generated notes do not name the version"
grep -Eq 'commit ([0-9a-f]{40}|unknown)' "$d/RELEASE_NOTES.md" || fail "generated notes do not name the commit"

# --- checksums and signature --------------------------------------------------
(cd "$d" && sha256sum -c --strict "$tarball.sha256" >/dev/null) || fail "sha256sum -c $tarball.sha256"
[[ $(cat "$d/$tarball.sha256") == "$(cd "$d" && sha256sum "$tarball")" ]] || fail ".sha256 is not '<hex>  <name>'"
grep -q "  $tarball\$" "$d/checksums.txt" || fail "checksums.txt does not list $tarball"
grep -q "  RELEASE_NOTES.md\$" "$d/checksums.txt" || fail "checksums.txt does not list RELEASE_NOTES.md"
[[ $(wc -l <"$d/checksums.txt") == 2 ]] || fail "checksums.txt: $(cat "$d/checksums.txt")"
(cd "$d" && sha256sum -c --strict checksums.txt >/dev/null) || fail "sha256sum -c checksums.txt"

out=$(cd "$d" && minisign -V -p "$tmp/key.pub" -m checksums.txt) || fail "minisign -V: $out"
grep -qx "Trusted comment: rch 9.8.0" <<<"$out" || fail "trusted comment: $out"
# And a changed checksums.txt no longer verifies.
cp "$d/checksums.txt" "$d/checksums.txt.minisig" "$tmp/"
echo "0000000000000000000000000000000000000000000000000000000000000000  evil" >>"$tmp/checksums.txt"
if minisign -V -p "$tmp/key.pub" -m "$tmp/checksums.txt" >/dev/null 2>&1; then fail "tampered checksums.txt verified"; fi

# --- release.json -------------------------------------------------------------
check_json() {
  python3 - "$@" <<'PY' || fail "release.json check failed for $1"
import json, os, re, sys
d, version, prerelease, signed, base = sys.argv[1:]
tag = "v" + version
with open(os.path.join(d, "release.json"), encoding="utf-8") as f:
    r = json.load(f)
def need(cond, what):
    if not cond:
        sys.exit(f"{d}/release.json: {what}: {json.dumps(r, indent=1)[:2000]}")
need(isinstance(r, dict), "not one object")
need(r["tag_name"] == tag, "tag_name")
need(r["name"] == f"rch {version}", "name")
need(r["prerelease"] is (prerelease == "true"), "prerelease")
need(r["draft"] is False, "draft")
with open(os.path.join(d, "RELEASE_NOTES.md"), encoding="utf-8") as f:
    need(r["body"] == f.read(), "body is not RELEASE_NOTES.md")
need(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["published_at"]), "published_at")
tarball = f"rch-{tag}-x86_64-unknown-linux-gnu.tar.gz"
names = [tarball, tarball + ".sha256", "checksums.txt"]
if signed == "true":
    names.append("checksums.txt.minisig")
names.append("RELEASE_NOTES.md")
need([a["name"] for a in r["assets"]] == names, "asset names")
for a in r["assets"]:
    need(a["size"] == os.path.getsize(os.path.join(d, a["name"])), f"size of {a['name']}")
    need(a["browser_download_url"] == f"{base}/{tag}/{a['name']}", f"url of {a['name']}")
PY
}
base=http://127.0.0.1:8765/releases
check_json "$d" 9.8.0 false true "$base"
check_json "$rel/v9.9.0-beta.1" 9.9.0-beta.1 true false "$base"
cmp -s "$tmp/notes.md" "$rel/v9.9.0-beta.1/RELEASE_NOTES.md" || fail "RCH_RELEASE_NOTES was not used"
[[ ! -e $rel/v9.9.0-beta.1/checksums.txt.minisig ]] || fail "unsigned release has a .minisig"
out=$("$rel/v9.9.0-beta.1/.build/rch" --version)
[[ $out == "rch 9.9.0-beta.1" ]] || fail "beta rch --version printed '$out'"

# --- releases.json ------------------------------------------------------------
bash "$mk_index" "$rel" 2>/dev/null || fail "make-releases-index failed"
order=$(python3 -c 'import json,sys; print(" ".join(r["tag_name"] for r in json.load(open(sys.argv[1]))))' "$rel/releases.json")
[[ $order == "v9.9.0-beta.1 v9.8.0" ]] || fail "releases.json order: $order"
# Semver precedence, not string order, on a wider set of (stub) releases.
for t in v9.8.0 v9.10.0 v9.9.0 v9.9.0-beta.2 v9.9.0-beta.10 v9.9.0-alpha v10.0.0-rc.1; do
  mkdir -p "$tmp/idx/$t"
  echo "{\"tag_name\": \"$t\"}" >"$tmp/idx/$t/release.json"
done
bash "$mk_index" "$tmp/idx" 2>/dev/null || fail "make-releases-index failed on stubs"
order=$(python3 -c 'import json,sys; print(" ".join(r["tag_name"] for r in json.load(open(sys.argv[1]))))' "$tmp/idx/releases.json")
want="v10.0.0-rc.1 v9.10.0 v9.9.0 v9.9.0-beta.10 v9.9.0-beta.2 v9.9.0-alpha v9.8.0"
[[ $order == "$want" ]] || fail "semver order: '$order', want '$want'"
if bash "$mk_index" "$tmp/x" 2>/dev/null; then fail "an index of no releases succeeded"; fi

# --- bad versions ----------------------------------------------------------------
for bad in 1.2 v1.2.3 1.2.3+build.5 01.2.3 1.2.3-beta..1 1.2.3-01 "1.2.3 " ""; do
  if bash "$mk_release" "$bad" "$tmp/bad" 2>"$tmp/err"; then fail "version '$bad' was accepted"; fi
  grep -q "invalid VERSION" "$tmp/err" || fail "version '$bad': unclear error: $(cat "$tmp/err")"
  [[ ! -e $tmp/bad ]] || fail "version '$bad' created the output dir"
done
if bash "$mk_release" 1.2.3 2>/dev/null; then fail "a missing OUTDIR was accepted"; fi

# --- an unsigned rerun drops the earlier signature ------------------------------
release 9.8.0 -u RCH_MINISIGN_SECRET_KEY
[[ ! -e $d/checksums.txt.minisig ]] || fail "an unsigned rerun left a stale checksums.txt.minisig"
check_json "$d" 9.8.0 false false "$base"

echo "release_test: ok" >&2
