#!/usr/bin/env bash
# config.toml's fleet defaults take effect, flags win over them: [defaults]
# parallel and [canary] percent/wait in a deploy's dry run and real run
# (peak parallelism), and rollback's --parallel default.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

write_config "parallel = 2
[canary]
percent = 50
wait = 1
"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run --strategy canary
contains "$OUT" "Strategy: canary 50%, wait 1s, then parallel 2"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run --canary 25 --canary-wait 3 --parallel 3
contains "$OUT" "Strategy: canary 25%, wait 3s, then parallel 3"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --dry-run
contains "$OUT" "parallel 2"

deploy 0
json 'assert d["peak_parallelism"] == 2 and d["strategy"]["parallelism"] == 2, (d["peak_parallelism"], d["strategy"])'
deploy 0 --force --parallel 4
json 'assert d["strategy"]["parallelism"] == 4, d["strategy"]'
deploy 0 --force --strategy canary
json 'assert d["strategy"]["percent"] == 50 and d["strategy"]["wait_secs"] == 1, d["strategy"]'
echo "PASS"
