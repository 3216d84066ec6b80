#!/usr/bin/env bash
# Configures (once) and builds rch into build/ with Ninja (and ccache when present).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RCH_BUILD_DIR:-$root/build}"
# Shared ccache entries with scripts/make-release.sh's build dirs (see there).
export CCACHE_BASEDIR="$build" CCACHE_NOHASHDIR=1
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -- -j"$(nproc)"
