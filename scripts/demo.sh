#!/usr/bin/env bash
# The main job: sets up the machine, builds rch, starts a local fleet of
# 4 OpenSSH workers on 127.0.0.1 (scripts/testbed.sh), then shows it,
# plans and runs a canary deployment of rch-wkr to it, and shows the result.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
bash "$root/scripts/build.sh"
build="${RCH_BUILD_DIR:-$root/build}"
fleet="$build/demo-fleet"
bash "$root/scripts/testbed.sh" up 4 "$fleet"
trap 'bash "$root/scripts/testbed.sh" down "$fleet"' EXIT
rm -rf "$fleet/state" "$fleet/data"
export RCH_CONFIG_DIR="$fleet" RCH_STATE_DIR="$fleet/state" RCH_DATA_DIR="$fleet/data" RCH_HOME="$fleet/home"
rch="$build/rch"
step() { if [[ -t 1 && -z ${NO_COLOR:-} ]]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }

step "the demo fleet (workers.toml)"
cat "$fleet/workers.toml"
step "rch fleet status"
"$rch" fleet status
step "rch fleet deploy --canary 25 --canary-wait 2 --dry-run"
"$rch" fleet deploy --canary 25 --canary-wait 2 --no-toolchain --dry-run
step "rch fleet deploy --canary 25 --canary-wait 2 --verify"
"$rch" fleet deploy --canary 25 --canary-wait 2 --no-toolchain --verify
step "rch fleet status (after)"
"$rch" fleet status
step "redeploy: every worker is already at the target"
"$rch" fleet deploy --no-toolchain
step "the audit trail ($RCH_STATE_DIR/audit.jsonl), event types"
python3 -c 'import json,sys; [print(" ", e["timestamp"], e["event_type"], e["worker_id"] or "") for e in map(json.loads, open(sys.argv[1]))]' \
  "$RCH_STATE_DIR/audit.jsonl" | tail -n 20
