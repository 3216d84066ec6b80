#!/usr/bin/env bash
# Installs the Debian packages rch needs to build, test and run its demo.
# Idempotent: asks dpkg first and only calls apt-get for what is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libluajit-5.1-dev luajit libssh-dev libasio-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libssl-dev libcurl4-openssl-dev libarchive-dev libzstd-dev
  catch2 libtomlplusplus-dev libcli11-dev
  openssh-server openssh-client minisign lua-check
  python3 python3-pyte rsync zstd procps clang-format
  dpkg-dev fakeroot man-db groff-base systemd zsh file
  g++-aarch64-linux-gnu qemu-user-static
)
# (scripts/package.sh needs dpkg-dev and fakeroot; the packaging test man-db,
# systemd-analyze and zsh; the mixed-architecture test the aarch64 cross compiler
# and qemu-user. lintian, heavy, is used when present, not installed.)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "bootstrap: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
