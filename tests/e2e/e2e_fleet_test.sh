#!/usr/bin/env bash
# ctest entry for the spec's fleet E2E script (scripts/e2e_fleet_test.sh) on the
# simulated fleet (RCH_MOCK_SSH=1): the script sets up its own temp config,
# state and workers; this only hands it the binaries ctest built.
set -euo pipefail
: "${RCH:?RCH must point at the rch binary}"
SOURCE_DIR=${RCH_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export RCH
exec bash "$SOURCE_DIR/scripts/e2e_fleet_test.sh"
