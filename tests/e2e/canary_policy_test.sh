#!/usr/bin/env bash
# Canary policies on real signals (issue 15), against the sshd testbed and a
# local HTTP(S) server started here (tests/unit/https_server.py with a test CA
# made by openssl; a self-signed server that must be refused):
# rch.http in an `rch run` script and in hooks (timeout, a 10 MB body over the
# cap, a redirect to file:// are `nil, err`); the Prometheus example policy over
# the [canary] interval (healthy canaries pass; the error ratio crossing the
# threshold mid-wait rolls the canary back at once, the other workers untouched;
# every measurement audited); the webhook example; [policy] through
# ctx.settings; and the scripted-exec simulator (RCH_MOCK_SSH=1, RCH_SIM_EXEC)
# running the load-average example policy.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
reset_workers
BACKGROUND=()
trap 'for p in "${BACKGROUND[@]}"; do kill "$p" 2>/dev/null || true; done; reset_workers; rm -rf "$TMP"' EXIT
examples=$RCH_SOURCE_DIR/hooks/examples
for f in canary_health_prometheus on_failure_webhook; do
  (($(wc -l <"$examples/$f.lua") <= 30)) || fail "$f.lua is longer than 30 lines"
done
# docs/lua-api.md prints the Prometheus example as shipped.
sed -n '/^<!-- tested: canary_health_prometheus.lua -->$/,/^```$/p' "$RCH_SOURCE_DIR/docs/lua-api.md" | sed '1,2d;$d' |
  diff - "$examples/canary_health_prometheus.lua" || fail "docs/lua-api.md's Prometheus example differs from the file"

# ---- a test CA, a server certificate it signs, a self-signed one nobody trusts
pki=$TMP/pki
mkdir -p "$pki"
cat >"$pki/ext.cnf" <<'EOF_CNF'
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[server]
basicConstraints = critical,CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
EOF_CNF
ossl() { openssl "$@" 2>>"$pki/openssl.log" || fail "openssl $1 failed: $(cat "$pki/openssl.log")"; }
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
ossl req -x509 "${ec[@]}" -days 2 -subj "/CN=rch policy test CA" -config "$pki/ext.cnf" -extensions ca \
  -keyout "$pki/ca.key" -out "$pki/ca.pem"
ossl req -new "${ec[@]}" -subj "/CN=localhost" -keyout "$pki/server.key" -out "$pki/server.csr"
ossl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -set_serial 7 -days 2 \
  -extfile "$pki/ext.cnf" -extensions server -out "$pki/server.pem"
ossl req -x509 "${ec[@]}" -days 2 -subj "/CN=localhost" -config "$pki/ext.cnf" -extensions server \
  -keyout "$pki/self.key" -out "$pki/self.pem"
CA=$pki/ca.pem

# serve NAME [CERT KEY]: https_server.py on $TMP/www, its base URL in $URL, requests in $TMP/NAME.log.
serve() {
  local name=$1 scheme=http; shift
  local args=()
  [[ $# -eq 2 ]] && args=(--cert "$1" --key "$2") && scheme=https
  python3 "$RCH_SOURCE_DIR/tests/unit/https_server.py" "$TMP/$name.port" "$TMP/www" --log "$TMP/$name.log" \
    "${args[@]}" 2>"$TMP/$name.err" &
  BACKGROUND+=("$!")
  for _ in $(seq 100); do [[ -s $TMP/$name.port ]] && break; sleep 0.1; done
  [[ -s $TMP/$name.port ]] || fail "https_server.py did not start: $(cat "$TMP/$name.err")"
  URL="$scheme://127.0.0.1:$(<"$TMP/$name.port")"
}
mkdir -p "$TMP/www/api/v1"
head -c $((10 * 1024 * 1024)) /dev/zero >"$TMP/www/ten.bin"
# ratio R: the error ratio Prometheus reports from now on (a vector with one sample).
ratio() {
  printf '{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%s,"%s"]}]}}' \
    "$(date +%s)" "$1" >"$TMP/www/api/v1/query.tmp"
  mv "$TMP/www/api/v1/query.tmp" "$TMP/www/api/v1/query"
}
serve good "$pki/server.pem" "$pki/server.key"
GOOD=$URL
serve self "$pki/self.pem" "$pki/self.key"
SELF=$URL

# ---- rch.http in a script: the CA added, untrusted servers refused, JSON posted, [http] defaults
cat >"$TMP/http.lua" <<'EOF_LUA'
local rch = require "rch"
local base, self, ca = ...
local function show(name, r, err)
  print(name, r and r.status or "nil", r and #r.body or err)
end
show("get", rch.http.get(base .. "/api/v1/query", { ca_file = ca }))
show("no-ca", rch.http.get(base .. "/api/v1/query"))
show("self", rch.http.get(self .. "/api/v1/query", { ca_file = ca }))
local r = assert(rch.http.post_json(base .. "/echo", { worker = "w1", n = 2 }, { ca_file = ca }))
local echo = rch.json.decode(r.body)
print("post", echo.method, echo.headers["content-type"], echo.body)
r = assert(rch.http.request { method = "PUT", url = base .. "/echo", body = "x", headers = { ["X-Site"] = "lab" },
  ca_file = ca })
echo = rch.json.decode(r.body)
print("put", echo.method, echo.headers["x-site"])
show("big", rch.http.get(base .. "/ten.bin", { ca_file = ca }))
show("slow", rch.http.get(base .. "/slow?secs=4", { ca_file = ca }))
show("file", rch.http.get(base .. "/redirect?to=file:///etc/passwd", { ca_file = ca }))
show("escape", { status = rch.http.escape('a b{w="1|2"}/'), body = "" })
EOF_LUA
ratio 0.01
write_config $'[http]\ntimeout = 1\n'
expect_exit 0 "$RCH" run "$TMP/http.lua" "$GOOD" "$SELF" "$CA"
contains "$OUT" $'get\t200\t'
contains "$OUT" $'no-ca\tnil\tTLS certificate of '"$GOOD/api/v1/query not trusted: "
contains "$OUT" $'self\tnil\tTLS certificate of '"$SELF/api/v1/query not trusted: "
contains "$OUT" $'post\tPOST\tapplication/json\t{"n":2,"worker":"w1"}'
contains "$OUT" $'put\tPUT\tlab'
contains "$OUT" $'big\tnil\tresponse of GET '"$GOOD/ten.bin is over the limit of 8388608 bytes"
contains "$OUT" $'slow\tnil\tGET '"$GOOD/slow?secs=4 timed out: " # [http] timeout = 1, not the default 30
contains "$OUT" $'file\tnil\trefusing redirect from '"$GOOD/redirect?to=file:///etc/passwd"
contains "$OUT" $'escape\ta%20b%7Bw%3D%221%7C2%22%7D%2F'
[[ $(grep -c "^POST /echo" "$TMP/good.log") == 1 ]] || fail "one POST expected: $(cat "$TMP/good.log")"
[[ ! -s $TMP/self.log ]] || fail "the self-signed server got a request: $(cat "$TMP/self.log")"
# [http] max_body_mb raises the cap.
write_config $'[http]\nmax_body_mb = 11\n'
expect_exit 0 "$RCH" run "$TMP/http.lua" "$GOOD" "$SELF" "$CA"
contains "$OUT" $'big\t200\t10485760'

# ---- the same errors reach a hook as nil, err
mkdir -p "$TMP/errhook/hooks"
cat >"$TMP/errhook/hooks/canary_health.lua" <<EOF_LUA
local rch = require "rch"
return function()
  local seen = {}
  for _, path in ipairs({ "/slow?secs=4", "/ten.bin", "/redirect?to=file:///etc/passwd" }) do
    local r, err = rch.http.get("$GOOD" .. path, { ca_file = "$CA", timeout = 1 })
    seen[#seen + 1] = r and ("status " .. r.status) or ("nil, " .. err)
  end
  return false, table.concat(seen, " | ")
end
EOF_LUA
write_config
deploy 1 --worker w1,w2 --canary 50 --canary-wait 0 --script-dir "$TMP/errhook"
json "
r = d['reason']
assert 'nil, GET $GOOD/slow?secs=4 timed out' in r, r
assert 'nil, response of GET $GOOD/ten.bin is over the limit of 8388608 bytes' in r, r
assert 'nil, refusing redirect from $GOOD/redirect?to=file:///etc/passwd' in r, r
assert st['w1']['status'] == 'RolledBack' and st['w2']['status'] == 'Skipped', d"

# ---- the Prometheus example over the analysis interval: healthy canaries pass
mkdir -p "$CFG/hooks"
cp "$examples/canary_health_prometheus.lua" "$CFG/hooks/canary_health.lua"
policy() { # policy URL CA_FILE: [canary] interval 1 s and the example's [policy]
  write_config "[canary]
interval = 1
[policy]
prometheus_url = \"$1\"
prometheus_ca_file = \"$2\"
error_ratio_max = 0.05
"
}
reset_workers
policy "$GOOD" "$CA"
: >"$TMP/good.log"
ratio 0.01
deploy 0 --canary 25 --canary-wait 3
json "assert d['counts']['completed'] == 4, d['counts']"
queries=$(grep -c "^GET /api/v1/query?query=" "$TMP/good.log")
[[ $queries == 3 ]] || fail "3 analyses expected in a 3 s wait at interval 1, got $queries: $(cat "$TMP/good.log")"
grep -q 'worker%3D~%22w1%22' "$TMP/good.log" || fail "the query does not name the canary w1: $(cat "$TMP/good.log")"
py "
m = [e for e in audit() if e['event_type'] == 'CanaryMeasurement']
assert len(m) == 3, m
assert all(e['details']['value'] == 0.01 and e['details']['threshold'] == 0.05 and e['details']['verdict'] == 'pass'
           for e in m), m
assert [e['details']['round'] for e in m] == [1, 2, 3], m"

# ---- the error ratio crosses the threshold mid-wait: the canary rolls back at once, the rest untouched
reset_workers
: >"$TMP/good.log"
ratio 0.01
( for _ in $(seq 300); do
    (($(grep -c "^GET /api/v1/query" "$TMP/good.log") >= 2)) && { ratio 0.2; exit 0; }
    sleep 0.05
  done ) &
BACKGROUND+=("$!")
t0=$SECONDS
deploy 1 --canary 25 --canary-wait 30
((SECONDS - t0 < 15)) || fail "the failing analysis did not end the 30 s wait ($((SECONDS - t0)) s)"
json "
assert d['reason'] == 'canary failed: error ratio 0.2000 > 0.0500', d['reason']
assert st['w1']['status'] == 'RolledBack', st['w1']
assert all(st[w]['status'] == 'Skipped' for w in ('w2', 'w3', 'w4')), d"
for k in 2 3 4; do [[ -z $(ls -A "$(root_of "$k")" | grep -v '^controller.lock$') ]] || fail "w$k was touched"; done
[[ ! -e $(root_of 1)/current ]] || fail "w1 still has a current link after its rollback"
py "
m = [e['details'] for e in audit() if e['event_type'] == 'CanaryMeasurement']
last = [x for x in m if x['verdict'] == 'fail']
assert len(last) == 1 and last[0]['value'] == 0.2 and last[0]['threshold'] == 0.05, m
assert m[-1] == last[0] and m[-2]['verdict'] == 'pass', m"

# ---- an untrusted Prometheus is refused (no request reaches it): the canary fails
reset_workers
policy "$SELF" "$CA"
: >"$TMP/self.log"
deploy 1 --canary 25 --canary-wait 1
json "assert d['reason'].startswith('canary failed: prometheus: TLS certificate of $SELF/api/v1/query'), d['reason']"
[[ ! -s $TMP/self.log ]] || fail "the untrusted server got a request: $(cat "$TMP/self.log")"
rm "$CFG/hooks/canary_health.lua"

# ---- the webhook example: a failed worker is posted as JSON
reset_workers
cp "$examples/on_failure_webhook.lua" "$CFG/hooks/on_failure.lua"
mkdir -p "$TMP/veto/hooks"
printf 'return function(ctx) if ctx.worker.id == "w2" then return false, "smoke test failed" end return true end\n' \
  >"$TMP/veto/hooks/post_install.lua"
write_config "[policy]
webhook_url = \"$GOOD/hook\"
webhook_ca_file = \"$CA\"
"
: >"$TMP/good.log"
deploy 1 --worker w1,w2 --script-dir "$TMP/veto"
json "assert st['w1']['status'] == 'Completed' and st['w2']['status'] == 'RolledBack', d"
py "
posts = [l for l in open('$TMP/good.log') if l.startswith('POST /hook ')]
assert len(posts) == 1, posts
body = json.loads(posts[0][len('POST /hook '):])
assert body['worker'] == 'w2' and body['step'] == 'post_install' and body['rolled_back'] is True, body
assert body['error'] == 'hook post_install vetoed: smoke test failed', body
assert body['target_version'] == os.environ['OWN'] and len(body['deployment_id']) == 36, body"
# An unreachable webhook is a warning; the deployment's outcome is unchanged.
write_config "[policy]
webhook_url = \"$SELF/hook\"
"
deploy 1 --worker w2 --script-dir "$TMP/veto"
contains "$ERR" "on_failure webhook: TLS certificate of $SELF/hook not trusted"
rm "$CFG/hooks/on_failure.lua"

# ---- rehearsal without a fleet: the load-average example against scripted answers
reset_workers
cp "$examples/canary_health_load.lua" "$CFG/hooks/canary_health.lua"
cat >"$TMP/rehearsal.toml" <<'EOF_TOML'
[[exec]]
worker = "w1"
command = "cat /proc/loadavg"
stdout = "9.50 9.10 8.70 3/211 4242\n"
delay_ms = 300

[[exec]]
command = "cat /proc/loadavg"
stdout = "0.42 0.40 0.38 1/180 4242\n"
EOF_TOML
write_config
export RCH_MOCK_SSH=1 RCH_SIM_EXEC=$TMP/rehearsal.toml
RCH_STATE_DIR=$TMP/sim-state deploy 1 --canary 25 --canary-wait 0
json "
assert d['reason'] == 'canary failed: canary w1 load 9.5 > 8.0', d['reason']
assert st['w1']['status'] == 'RolledBack' and all(st[w]['status'] == 'Skipped' for w in ('w2', 'w3', 'w4')), d"
# The same policy with w2 as the (quiet) canary passes; a maintenance script sees the scripted answers.
RCH_STATE_DIR=$TMP/sim-state deploy 0 --worker w2,w3 --canary 50 --canary-wait 0
json "assert d['counts']['completed'] == 2, d['counts']"
printf 'local fleet = require "rch.fleet"\nlocal r = fleet.exec(fleet.workers("w[1-2]"), { "cat", "/proc/loadavg" })\nprint(r.w1.out, r.w2.out)\nprint(fleet.exec(fleet.workers("w1"), { "uptime" }).w1.error)\n' \
  >"$TMP/loads.lua"
RCH_STATE_DIR=$TMP/sim-state expect_exit 0 "$RCH" run "$TMP/loads.lua"
contains "$OUT" $'9.50 9.10 8.70 3/211 4242\n\t0.42 0.40 0.38 1/180 4242'
contains "$OUT" "simulated worker w1 cannot run 'uptime': no [[exec]] rule of $TMP/rehearsal.toml matches it"
for k in 1 2 3 4; do [[ -z $(ls -A "$(root_of "$k")") ]] || fail "the rehearsal touched the real w$k"; done
unset RCH_MOCK_SSH RCH_SIM_EXEC
echo "canary_policy_test: ok"
