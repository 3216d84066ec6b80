#!/usr/bin/env bash
# The shipped hook examples work as documented when installed as hooks:
# the smoke-job post_verify, the change-freeze pre_deploy, the load-aware
# canary_health policy (which wraps the built-in one).
source "$(dirname "$0")/lib.sh"
: "${RCH_TESTBED_DIR:?}"
export RCH_STATE_DIR="$TMP/state" RCH_HOME="$TMP/home" RCH_DATA_DIR="$TMP/data"
reset_workers
trap 'reset_workers; rm -rf "$TMP"' EXIT
json() { python3 -c "import json,sys; d=json.load(sys.stdin); st={w['worker_id']: w for w in d['workers']}; $1" <<<"$OUT"; }
examples="$RCH_SOURCE_DIR/hooks/examples"

# A config dir of our own: the testbed's workers, w3 tagged "frozen".
cfg="$TMP/cfg"
mkdir -p "$cfg/hooks"
cp "$TB/known_hosts" "$TB/config.toml" "$cfg/"
sed 's|^known_hosts = .*|known_hosts = "'"$cfg"'/known_hosts"|' "$TB/config.toml" >"$cfg/config.toml"
python3 - "$TB/workers.toml" "$cfg/workers.toml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = text.split("[[workers]]")
out = []
for b in blocks:
    if 'id = "w3"' in b:
        b = re.sub(r'tags = \[(.*?)\]', lambda m: 'tags = [%s, "frozen"]' % m.group(1), b)
    out.append(b)
open(sys.argv[2], "w").write("[[workers]]".join(out))
PY
export RCH_CONFIG_DIR=$cfg

# post_verify smoke job: every worker runs a job through the new agent first.
cp "$examples/post_verify_smoke_job.lua" "$cfg/hooks/post_verify.lua"
expect_exit 0 "$RCH" -v fleet deploy --no-toolchain --json --worker w1,w2
json 'assert all(st[i]["status"] == "Completed" for i in ("w1", "w2")), d'
contains "$ERR" "smoke job passed"
rm "$cfg/hooks/post_verify.lua"

# Change freeze: w3 is tagged frozen and refused; a worker tagged canary-ok
# is allowed outside the window, the others depend on the hour (checked as such).
cp "$examples/pre_deploy_freeze.lua" "$cfg/hooks/pre_deploy.lua"
set +e; "$RCH" fleet deploy --no-toolchain --json --worker w3,w4 >"$TMP/out" 2>"$TMP/err"; set -e
OUT=$(cat "$TMP/out")
hour=$(date -u +%H)
json "
assert st['w3']['status'] == 'Failed' and st['w3']['error'] == 'pre_deploy: hook pre_deploy vetoed: worker is tagged frozen', st['w3']
in_window = 1 <= int('$hour'.lstrip('0') or '0') <= 5
w4 = st['w4']
assert (w4['status'] == 'Completed') if in_window else ('outside the maintenance window' in w4['error']), w4"
[[ ! -e $TB/w3/root/current ]] || fail "the frozen worker was touched"
rm "$cfg/hooks/pre_deploy.lua"

# Load-aware canary policy: wraps the built-in, reads /proc/loadavg on the canary.
# The limit is set per case: this machine's own load is not the test's business.
sed 's/^local MAX_LOAD = .*/local MAX_LOAD = 1e9/' "$examples/canary_health_load.lua" >"$cfg/hooks/canary_health.lua"
grep -q '^local MAX_LOAD = 1e9' "$cfg/hooks/canary_health.lua" || fail "example changed shape"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --json --worker w1,w2,w3,w4 --canary 25 --canary-wait 0 --force
json "assert d['counts']['completed'] == 4, d['counts']"
sed -i 's/^local MAX_LOAD = .*/local MAX_LOAD = -1/' "$cfg/hooks/canary_health.lua"
expect_exit 1 "$RCH" fleet deploy --no-toolchain --json --worker w1,w2,w3,w4 --canary 25 --canary-wait 0 --force
json "assert d['reason'].startswith('canary failed: canary w1 load'), d['reason']
assert st['w1']['status'] == 'RolledBack' and all(st[i]['status'] == 'Skipped' for i in ('w2','w3','w4')), d"
echo "hook_examples_test: ok"
