#!/usr/bin/env bash
# Builds the Debian packages of rch from this tree, with dpkg-deb:
#   rch      rch, rchd, their man pages, bash/zsh completion, systemd units, docs and examples
#   rch-wkr  the worker agent alone (what a worker needs), which rch depends on
# Each package's Depends are named from its binaries' real shared libraries
# (dpkg-shlibdeps). Runs lintian on them when it is installed.
#
# usage: scripts/package.sh [--build-dir DIR] [--out DIR] [--no-build]
#   --build-dir  the CMake build to package (default $RCH_BUILD_DIR, else build/)
#   --out        where the .deb files go (default dist/)
#   --no-build   package the build as it is (the tests do: no rebuild)
#   --no-lintian do not run lintian even when it is installed
# Prints the paths of the packages it wrote.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RCH_BUILD_DIR:-$root/build}"
out="$root/dist"
no_build=0
lint=1
while (($#)); do
  case $1 in
    --build-dir) build=${2:?--build-dir needs a directory}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --no-build) no_build=1; shift ;;
    --no-lintian) lint=0; shift ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for tool in dpkg-deb dpkg-shlibdeps fakeroot; do
  command -v "$tool" >/dev/null || { echo "package.sh: $tool is missing: run scripts/bootstrap.sh" >&2; exit 1; }
done

if ((no_build == 0)); then
  RCH_BUILD_DIR="$build" bash "$root/scripts/build.sh" >&2
fi
[[ -x $build/rch && -f $build/generated/dist/rch.1 ]] ||
  { echo "package.sh: $build has no built rch and man pages: build it first (scripts/build.sh)" >&2; exit 1; }

version=$("$build/rch" --version)
version=${version#rch }
arch=$(dpkg --print-architecture)
maintainer="rch developers <rch-dev@example.org>"
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One install of the whole tree under /usr, stripped, split into the packages below.
DESTDIR="$work/install" cmake --install "$build" --prefix /usr --strip >/dev/null

# Dates from the last commit, so that the same tree gives the same packages.
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}

# pkg_dir NAME: an empty package tree with its copyright and changelog (Debian policy 12.5, 12.7).
pkg_dir() {
  local name=$1 dir="$work/$1"
  install -d -m 0755 "$dir/DEBIAN" "$dir/usr/share/doc/$name"
  cat >"$dir/usr/share/doc/$name/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rch
Comment: built from the rch source tree by scripts/package.sh

Files: *
Copyright: $(date -u +%Y -d @"$epoch") the rch developers
License: rch
 Distributed with the rch source tree under the terms stated there.
EOF
  # A native package (no Debian revision): its changelog is changelog.gz.
  printf '%s (%s) unstable; urgency=medium\n\n  * Package built from the source tree by scripts/package.sh.\n\n -- %s  %s\n' \
    "$name" "$version" "$maintainer" "$(date -R -d @"$epoch")" | gzip -9n >"$dir/usr/share/doc/$name/changelog.gz"
  echo "$dir"
}

# move FROM_INSTALL TO_PKG_DIR PATH…: moves installed files into a package tree.
move() {
  local dir=$1 p
  shift
  for p in "$@"; do
    install -d -m 0755 "$dir/$(dirname "$p")"
    mv "$work/install/$p" "$dir/$p"
  done
}

# finish NAME DESCRIPTION EXTRA_DEPENDS: control file with computed Depends, md5sums, build.
finish() {
  local name=$1 summary=$2 long=$3 extra=$4 dir="$work/$1" deps
  find "$dir/usr/share/man" -type f -name '*.[0-9]' -exec gzip -9n {} + 2>/dev/null || true
  local bins=()
  mapfile -t bins < <(find "$dir/usr/bin" -type f)
  # dpkg-shlibdeps wants a debian/control; a minimal one in a scratch dir does.
  mkdir -p "$work/shlibs-$name/debian"
  printf 'Source: rch\n\nPackage: %s\nArchitecture: any\n' "$name" >"$work/shlibs-$name/debian/control"
  deps=$(cd "$work/shlibs-$name" && dpkg-shlibdeps -O "${bins[@]}" 2>"$work/shlibdeps-$name.err") ||
    { cat "$work/shlibdeps-$name.err" >&2; exit 1; }
  deps=${deps#shlibs:Depends=}
  [[ -n $extra ]] && deps="$deps, $extra"
  local size
  size=$(du -sk --exclude=DEBIAN "$dir" | cut -f1)
  cat >"$dir/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: $deps
Section: admin
Priority: optional
Homepage: https://github.com/rch-dev/rch
Description: $summary
$long
EOF
  (cd "$dir" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$dir/DEBIAN/md5sums"
  find "$dir" -type d -exec chmod 0755 {} +
  chmod 0644 "$dir/DEBIAN/control" "$dir/DEBIAN/md5sums"
  local deb="$out/${name}_${version}_${arch}.deb"
  fakeroot dpkg-deb --root-owner-group -Zxz --build "$dir" "$deb" >/dev/null
  echo "$deb"
}

wkr=$(pkg_dir rch-wkr)
move "$wkr" usr/bin/rch-wkr usr/share/man/man1/rch-wkr.1
rch=$(pkg_dir rch)
# The rest of the install (rch, rchd, pages, completion, units, docs) is rch's.
(cd "$work/install" && find . -type f -o -type l) | sed 's|^\./||' | while read -r p; do
  move "$rch" "$p"
done

debs=()
debs+=("$(finish rch-wkr "rch worker agent" \
  " rch-wkr runs build jobs under leases on a worker, reports its health and
 drains for updates. rch deploys and updates it over SSH; this package is
 for workers that get it from the package manager instead." "")")
debs+=("$(finish rch "deploy and update the rch worker agent across an SSH fleet" \
  " rch deploys rch-wkr to a fleet of SSH hosts with canary and rolling
 strategies, rollback, resume, an audit log and Lua hooks, and updates
 itself from signed releases. rchd, the local build daemon, runs under
 systemd (user or system unit). Man pages and bash/zsh completion included." \
  "rch-wkr (= $version)")")

if ((lint)) && command -v lintian >/dev/null; then
  # A local package has no upload target, no source package, no ITP bug.
  lintian --tag-display-limit 0 --fail-on error,warning "${debs[@]}" >&2 || { echo "package.sh: lintian found problems (above)" >&2; exit 1; }
fi
printf '%s\n' "${debs[@]}"
