#!/usr/bin/env bash
# make-release.sh VERSION OUTDIR: builds rch, rchd and rch-wkr from this source
# tree at VERSION and writes the release artifact contract of spec/update.md
# into OUTDIR: the deterministic tarball, its .sha256, checksums.txt (minisigned
# when RCH_MINISIGN_SECRET_KEY names an unencrypted key), RELEASE_NOTES.md and
# release.json (one GitHub REST release object). Idempotent: a rerun rebuilds
# incrementally and rewrites every file.
#
# Environment:
#   RCH_MINISIGN_SECRET_KEY  minisign secret key file; unset = no signature
#   RCH_RELEASE_NOTES        file with the release notes; unset = generated
#   RCH_RELEASE_BASE_URL     download base (default https://example.invalid/releases)
#   RCH_RELEASE_BUILD_DIR    build directory (default OUTDIR/.build; another target's
#                            build goes to that path plus -<arch>)
#   RCH_RELEASE_TARGETS      target triples, space-separated (default: this machine's,
#                            x86_64-unknown-linux-gnu). Another one is cross-built with
#                            cmake/<arch>-linux-gnu.cmake (scripts/bootstrap.sh installs the
#                            aarch64 compiler); its tarball holds the agents only (rch-wkr,
#                            rchd, static), which is what a mixed-architecture fleet deploys.
#   RCH_RELEASE_AGENT_ONLY   1: every target's tarball holds the agents only, this machine's
#                            too (tests that deploy rch-wkr from a release build no rch)
set -euo pipefail

die() {
  echo "make-release: $*" >&2
  exit 1
}
say() { echo "make-release: $*" >&2; }

(($# == 2)) || die "usage: make-release.sh VERSION OUTDIR (VERSION like 1.2.3 or 1.2.3-beta.1, no leading v)"
version=$1
outdir=$2

# Semver 2.0 core with an optional pre-release; no build metadata ('+' has no
# place in asset names) and no leading 'v' (the tag adds it).
num='(0|[1-9][0-9]*)'
[[ $version =~ ^$num\.$num\.$num(-([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?$ ]] ||
  die "invalid VERSION '$version': need semver X.Y.Z or X.Y.Z-PRE (e.g. 1.2.3, 1.2.3-beta.1), without a leading 'v'"
if [[ -n ${BASH_REMATCH[5]} ]]; then
  IFS=. read -ra idents <<<"${BASH_REMATCH[5]}"
  for id in "${idents[@]}"; do
    [[ $id =~ ^0[0-9]+$ ]] && die "invalid VERSION '$version': numeric pre-release identifier '$id' has a leading zero"
  done
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
build=${RCH_RELEASE_BUILD_DIR:-$outdir/.build}
mkdir -p "$build"
build=$(cd "$build" && pwd)

# Two runs writing one OUTDIR would interleave their files.
exec 9>"$outdir/.make-release.lock"
flock -n 9 || die "another make-release is writing $outdir"

notes_src=${RCH_RELEASE_NOTES:-}
[[ -z $notes_src || -f $notes_src ]] || die "RCH_RELEASE_NOTES=$notes_src is not a file"
key=${RCH_MINISIGN_SECRET_KEY:-}
if [[ -n $key ]]; then
  [[ -f $key ]] || die "RCH_MINISIGN_SECRET_KEY=$key is not a file"
  command -v minisign >/dev/null || die "minisign not found: run scripts/bootstrap.sh"
fi
base_url=${RCH_RELEASE_BASE_URL:-https://example.invalid/releases}
base_url=${base_url%/}

native=$(uname -m)-unknown-linux-gnu
read -ra targets <<<"${RCH_RELEASE_TARGETS:-$native}"
((${#targets[@]} > 0)) || die "RCH_RELEASE_TARGETS is empty"
for t in "${targets[@]}"; do
  [[ $t == "$native" || -f $root/cmake/${t%%-*}-linux-gnu.cmake ]] ||
    die "no toolchain file cmake/${t%%-*}-linux-gnu.cmake to cross-build target $t"
done
tag="v$version"

# Build with the same flags as scripts/build.sh (RelWithDebInfo; the binaries
# are stripped below). A base_dir at the build directory makes its absolute
# paths (the generated include dir) relative and NOHASHDIR keeps the working
# directory out of the hash, so every build dir — the main one and each
# release — shares one ccache entry per source file: a new version recompiles
# only build_info.cpp.
export CCACHE_NOHASHDIR=1
stage="$outdir/.stage"
rm -rf "$stage"
mkdir -p "$stage"

# build_target TARGET: builds TARGET's binaries, stripped, into $stage/TARGET/ and sets `bins`.
build_target() {
  local t=$1 arch=${1%%-*} dir=$build flags=() strip=strip b got
  bins=(rch rchd rch-wkr)
  if [[ ${RCH_RELEASE_AGENT_ONLY:-} == 1 ]]; then
    bins=(rchd rch-wkr) flags=(-DRCH_AGENT_ONLY=ON)
  fi
  if [[ $t != "$native" ]]; then
    dir=$build-$arch bins=(rchd rch-wkr) strip=$arch-linux-gnu-strip
    flags=(-DCMAKE_TOOLCHAIN_FILE="$root/cmake/$arch-linux-gnu.cmake" -DRCH_AGENT_ONLY=ON)
  fi
  say "building rch $version for $t in $dir"
  local log="$dir/make-release.log"
  mkdir -p "$dir"
  if ! {
    CCACHE_BASEDIR=${CCACHE_BASEDIR:-$dir} cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DRCH_VERSION="$version" -DBUILD_TESTING=OFF "${flags[@]}" &&
      CCACHE_BASEDIR=${CCACHE_BASEDIR:-$dir} cmake --build "$dir" --target "${bins[@]}"
  } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "build for $t failed (full log: $log)"
  fi
  mkdir -p "$stage/$t"
  for b in "${bins[@]}"; do
    if [[ $t == "$native" ]]; then
      # The binary must say the version it is released as.
      got=$("$dir/$b" --version) || die "$b --version failed"
      [[ $got == "$b $version" ]] || die "$dir/$b --version printed '$got', expected '$b $version'"
    else
      # It may not run here: its ELF header must name the target's machine.
      got=$(file -b "$dir/$b")
      [[ $got == *"${arch/aarch64/ARM aarch64}"* ]] || die "$dir/$b is not an ELF for $arch: $got"
    fi
    "$strip" -o "$stage/$t/$b" "$dir/$b"
  done
}

if [[ -n $notes_src ]]; then
  cp "$notes_src" "$stage/RELEASE_NOTES.md"
else
  commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
  if [[ $commit != unknown && -n $(git -C "$root" status --porcelain 2>/dev/null) ]]; then
    commit="$commit (with uncommitted changes)"
  fi
  printf '# rch %s\n\nBuilt from git commit %s.\n' "$version" "$commit" >"$stage/RELEASE_NOTES.md"
fi
chmod 0644 "$stage/RELEASE_NOTES.md"

tarballs=()
for t in "${targets[@]}"; do
  build_target "$t"
  tarball="rch-$tag-$t.tar.gz"
  cp "$stage/RELEASE_NOTES.md" "$stage/$t/"
  chmod 0755 "${bins[@]/#/$stage/$t/}"
  # Deterministic tarball: sorted names, fixed times, owners and modes, no gzip name/time.
  mapfile -t entries < <(printf '%s\n' "${bins[@]}" RELEASE_NOTES.md | LC_ALL=C sort)
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$stage/$t" -cf - "${entries[@]}" | gzip -n -9 >"$stage/$tarball"
  (cd "$stage" && sha256sum "$tarball" >"$tarball.sha256")
  tarballs+=("$tarball")
done

cd "$stage"
sha256sum RELEASE_NOTES.md "${tarballs[@]}" >checksums.txt
assets=()
for tarball in "${tarballs[@]}"; do assets+=("$tarball" "$tarball.sha256"); done
assets+=(checksums.txt)
if [[ -n $key ]]; then
  minisign -S -s "$key" -m checksums.txt -x checksums.txt.minisig -t "rch $version" </dev/null >/dev/null ||
    die "minisign could not sign checksums.txt with $key (it must be an unencrypted key: minisign -G -W)"
  assets+=(checksums.txt.minisig)
else
  say "RCH_MINISIGN_SECRET_KEY is not set: checksums.txt is NOT signed"
fi
assets+=(RELEASE_NOTES.md)

python3 - "$version" "$tag" "$base_url" "${assets[@]}" >release.json <<'PY'
import datetime, json, os, sys
version, tag, base, *assets = sys.argv[1:]
with open("RELEASE_NOTES.md", encoding="utf-8") as f:
    body = f.read()
release = {
    "tag_name": tag,
    "name": f"rch {version}",
    "prerelease": "-" in version,
    "draft": False,
    "body": body,
    "published_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "assets": [
        {"name": a, "size": os.path.getsize(a), "browser_download_url": f"{base}/{tag}/{a}"}
        for a in assets
    ],
}
json.dump(release, sys.stdout, indent=2)
sys.stdout.write("\n")
PY

# Publish: a stale signature from an earlier signed run must not survive.
rm -f "$outdir/checksums.txt.minisig"
for f in "${assets[@]}" release.json; do mv -f "$f" "$outdir/$f"; done
cd "$outdir"
rm -rf "$stage"
say "wrote ${assets[*]} release.json to $outdir"
