#!/usr/bin/env bash
# The --json contract of every fleet command, on real output from the sshd
# testbed (docs/json.md): one JSON document on stdout, "schema_version",
# workers named "worker_id" everywhere, and errors (configuration, a pattern
# matching nothing, a refusal) as {"ok": false, "error", "exit_code"} on stdout.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

# doc 'PYTHON': stdout is exactly one JSON document with schema_version 1; runs PYTHON on it as d.
doc() {
  python3 -c "
import json, sys
d = json.loads(sys.stdin.read())
assert isinstance(d, dict) and d.get('schema_version') == 1, d
$1" <<<"$OUT" || fail "JSON contract: $1
--- stdout: $OUT
--- stderr: $ERR"
}
# workers KEY: every entry of d[KEY] names its worker as worker_id (and has no 'id').
WORKERS='lambda ws: all("worker_id" in w and "id" not in w for w in ws)'

stage "$NEXT" "$RCH_WKR_NEXT"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --json --worker 'w[1-2]'
doc "assert ($WORKERS)(d['workers']) and d['outcome'] == 'completed', d"
DEP=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$OUT")
expect_exit 0 "$RCH" fleet deploy --no-toolchain --json --dry-run --version "$NEXT"
doc "assert ($WORKERS)(d['predictions']) and all('current_version' in p for p in d['predictions']), d"
expect_exit 0 "$RCH" fleet deploy --no-toolchain --json --version "$NEXT" --worker w1
expect_exit 0 "$RCH" fleet rollback --json --worker w1
doc "assert ($WORKERS)(d['workers']), d"
expect_exit 0 "$RCH" fleet status --json
doc "assert ($WORKERS)(d['workers']), d
assert all({'host', 'hostname', 'address', 'port', 'user', 'jump'} <= set(w) for w in d['workers']), d
assert all(isinstance(w['port'], int) and w['user'] == 'rchtest' and w['address'] == '127.0.0.1' for w in d['workers']), d"
expect_exit 0 "$RCH" fleet verify --json --worker 'w[1-2]'
doc "assert ($WORKERS)(d['workers']) and d['ok'] is True, d"
expect_exit 0 "$RCH" fleet drain --json --worker w2 --timeout 5
doc "assert ($WORKERS)(d['workers']), d"
expect_exit 0 "$RCH" fleet undrain --json --worker w2
doc "assert ($WORKERS)(d['workers']), d"
expect_exit 0 "$RCH" fleet exec --json --worker 'w[1-2]' -- uname -r
doc "assert ($WORKERS)(d['workers']) and all({'exit_code', 'stdout', 'stderr', 'duration_secs', 'truncated', 'timed_out', 'error'} <= set(w) for w in d['workers']), d"
head -c 1000 /dev/urandom >"$TMP/copy.bin"
expect_exit 0 "$RCH" fleet copy --json --worker 'w[1-2]' "$TMP/copy.bin" "$(root_of 1)/copy.bin"
doc "assert ($WORKERS)(d['workers']) and {'sha256', 'size', 'mode', 'bytes_sent', 'duration_secs'} <= set(d), d"
expect_exit 2 "$RCH" fleet exec --json --worker 'nope*' -- true
doc "assert d['ok'] is False and d['exit_code'] == 2, d"
expect_exit 0 "$RCH" fleet history --json
doc "assert len(d['deployments']) >= 2, d"
expect_exit 0 "$RCH" fleet history show "$DEP" --json
doc "assert ($WORKERS)(d['workers']), d"

echo "--- errors under --json are a JSON object on stdout"
expect_exit 2 "$RCH" fleet status --json --worker 'nope*'
doc "assert d['ok'] is False and d['exit_code'] == 2 and \"'nope*' matches no worker\" in d['error'], d"
contains "$ERR" "matches no worker"
expect_exit 2 "$RCH" fleet deploy --no-toolchain --json --resume --worker w1
doc "assert d['ok'] is False and d['exit_code'] == 2 and '--resume takes the workers' in d['error'], d"
cp "$CFG/workers.toml" "$TMP/workers.good"
printf '[[workers]]\nid = "w1"\nhots = "x"\n' >"$CFG/workers.toml"
for cmd in "fleet status" "fleet verify" "fleet drain" "fleet deploy --no-toolchain" "fleet rollback" "fleet history --worker w1"; do
  # shellcheck disable=SC2086
  expect_exit 2 "$RCH" $cmd --json
  doc "assert d['ok'] is False and d['exit_code'] == 2 and 'workers.toml:3:1: unknown key' in d['error'], ('$cmd', d)"
done
cp "$TMP/workers.good" "$CFG/workers.toml"
echo "PASS"
