#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (packages), builds, and runs every test:
# Catch2 unit tests, Lua tests in the embedded engine, luacheck, integration
# tests against real OpenSSH servers (scripts/testbed.sh) and CLI tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
bash "$root/scripts/build.sh"
build="${RCH_BUILD_DIR:-$root/build}"
ctest --test-dir "$build" --output-on-failure --timeout 300 -j"$(nproc)" "$@"
