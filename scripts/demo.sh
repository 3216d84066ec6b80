#!/usr/bin/env bash
# The main job: sets up the machine, builds rch, starts a local fleet of
# 4 OpenSSH workers on 127.0.0.1 (scripts/testbed.sh) and shows it with rch.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
bash "$root/scripts/build.sh"
build="${RCH_BUILD_DIR:-$root/build}"
fleet="$build/demo-fleet"
bash "$root/scripts/testbed.sh" up 4 "$fleet"
trap 'bash "$root/scripts/testbed.sh" down "$fleet"' EXIT
export RCH_CONFIG_DIR="$fleet" RCH_STATE_DIR="$fleet/state" RCH_HOME="$fleet/home"
rch="$build/rch"

echo "== workers.toml of the demo fleet"
cat "$fleet/workers.toml"
echo
echo "== rch fleet status"
"$rch" fleet status
echo
echo "== rch fleet status --json"
"$rch" fleet status --json
