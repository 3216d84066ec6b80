#!/usr/bin/env bash
# rch fleet status (--json shape, an unreachable worker, --watch piped) and
# rch fleet verify (clean fleet, a modified binary, a dangling current link,
# bin/rch-wkr replaced by a plain file, an unhealthy agent, a straggler)
# against the real sshd testbed.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
# One attempt per connect: the timings below are those of one attempt (retries:
# connect_retry_test.sh).
write_config 'connect_timeout = 3
connect_retries = 0
'
CONNECT_TIMEOUT=3
trap 'bash "$RCH_SOURCE_DIR/scripts/testbed.sh" start 2 "$TB" >/dev/null 2>&1 || true; disown -a; deploy_cleanup' EXIT
# jcheck 'PYTHON': like json, for outputs whose workers have no worker_id.
jcheck() {
  python3 -c "$PY_PRELUDE
d = json.loads(sys.stdin.read())
$1" <<<"$OUT" || fail "JSON check failed:$1
--- stdout: $OUT
--- stderr: $ERR"
}
P1=$(port_of 1) P2=$(port_of 2) P3=$(port_of 3) P4=$(port_of 4) SILENT=
export P1 P2 P3 P4 SILENT
[[ -n $P1 && -n $P4 ]] || fail "no ports in $TB/workers.toml"

# ---- status on fresh workers: the full shape, nothing installed.
KEYS='{"worker_id","host","hostname","address","port","user","jump","reachable","root","version","versions","draining","active_builds","disk_free_mb","last_deployment","error"}'
expect_exit 0 "$RCH" fleet status --json
jcheck "
assert list(d) == ['schema_version', 'workers'], d
assert [x['worker_id'] for x in d['workers']] == ['w1', 'w2', 'w3', 'w4'], d
for k, x in enumerate(d['workers'], 1):
    assert set(x) == $KEYS, sorted(x)
    assert (x['host'], x['port'], x['user']) == ('127.0.0.1', int(os.environ['P%d' % k]), 'rchtest'), x
    assert x['reachable'] is True and x['error'] is None and x['root'] == os.environ['TB'] + '/w%d/root' % k, x
    assert x['version'] is None and x['versions'] == [] and x['last_deployment'] is None, x
    assert x['active_builds'] is None and x['draining'] is False, x
    assert isinstance(x['disk_free_mb'], int) and x['disk_free_mb'] > 0, x"

# ---- After a deploy of 0.1.0 and an upgrade of w3 to 0.2.0.
deploy 0
DEP1=$(json 'print(d["id"])')
stage "$NEXT" "$RCH_WKR_NEXT"
deploy 0 --version "$NEXT" --worker w3
DEP2=$(json 'print(d["id"])')
expect_exit 0 "$RCH" fleet status --json
DEP1=$DEP1 DEP2=$DEP2 jcheck "
for k, x in enumerate(d['workers'], 1):
    assert set(x) == $KEYS, sorted(x)
    assert x['reachable'] is True and x['error'] is None, x
    assert x['draining'] is False and x['active_builds'] == 0, x
    assert isinstance(x['disk_free_mb'], int) and x['disk_free_mb'] > 0, x
    ld = x['last_deployment']
    assert set(ld) == {'id', 'status', 'target_version', 'completed_at'} and ld['status'] == 'Completed', ld
    if k == 3:
        assert x['version'] == os.environ['NEXT'] and x['versions'] == [os.environ['OWN'], os.environ['NEXT']], x
        assert ld['id'] == os.environ['DEP2'] and ld['target_version'] == os.environ['NEXT'], ld
    else:
        assert x['version'] == os.environ['OWN'] and x['versions'] == [os.environ['OWN']], x
        assert ld['id'] == os.environ['DEP1'] and ld['target_version'] == os.environ['OWN'], ld"
expect_exit 0 "$RCH" fleet status --worker w3
grep -qE "^w3 +rchtest@127\.0\.0\.1:$P3 +yes +$NEXT +ready +0 +[0-9]+ +Completed $NEXT" <<<"$OUT" || fail "status row of w3: $OUT"
[[ $(wc -l <<<"$OUT") == 3 && $(tail -n 1 <<<"$OUT") == "  reachable   w3" ]] || fail "--worker w3 printed: $OUT"

# ---- A stopped sshd: w2 is unreachable, within the connect timeout; the others answer.
bash "$RCH_SOURCE_DIR/scripts/testbed.sh" stop 2 "$TB" >/dev/null
start=$(date +%s.%N)
expect_exit 0 "$RCH" fleet status --json
took=$(python3 -c "print($(date +%s.%N) - $start)")
python3 -c "assert $took < $CONNECT_TIMEOUT + 2" || fail "status took $took s with w2 down (connect timeout $CONNECT_TIMEOUT s)"
jcheck "
w = {x['worker_id']: x for x in d['workers']}
assert set(w['w2']) == $KEYS, sorted(w['w2'])
assert w['w2']['reachable'] is False and w['w2']['version'] is None, w['w2']
assert '127.0.0.1' in w['w2']['error'] and str(w['w2']['port']) in w['w2']['error'], w['w2']
for i in ('w1', 'w3', 'w4'):
    assert w[i]['reachable'] is True and w[i]['error'] is None and w[i]['version'] is not None, w[i]"
# verify names it too.
expect_exit 1 "$RCH" fleet verify --json
jcheck "
w = {x['worker_id']: x for x in d['workers']}
assert w['w2']['reachable'] is False and w['w2']['findings'][0].startswith('unreachable: '), w['w2']"
bash "$RCH_SOURCE_DIR/scripts/testbed.sh" start 2 "$TB" >/dev/null

# ---- A host that accepts the TCP connection and never speaks SSH: it costs the
# connect timeout, no more, and the others still answer.
python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1])); __import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
held = []
while True: held.append(s.accept()[0])' "$TMP/silent.port" >/dev/null 2>&1 &
BACKGROUND+=($!)
wait_for "$TMP/silent.port"
SILENT=$(<"$TMP/silent.port"); export SILENT
sed -i "s/^port = $P2\$/port = $SILENT/" "$CFG/workers.toml"
grep -q "^port = $SILENT\$" "$CFG/workers.toml" || fail "could not point w2 at the silent port"
start=$(date +%s.%N)
expect_exit 0 "$RCH" fleet status --json
took=$(python3 -c "print($(date +%s.%N) - $start)")
python3 -c "assert $CONNECT_TIMEOUT - 0.5 <= $took < $CONNECT_TIMEOUT + 2" || fail "status took $took s with a silent w2 (connect timeout $CONNECT_TIMEOUT s)"
jcheck "
w = {x['worker_id']: x for x in d['workers']}
assert w['w2']['reachable'] is False and w['w2']['port'] == int(os.environ['SILENT']), w['w2']
assert os.environ['SILENT'] in w['w2']['error'] and 'imeout' in w['w2']['error'], w['w2']
for i in ('w1', 'w3', 'w4'):
    assert w[i]['reachable'] is True and w[i]['error'] is None and w[i]['version'] is not None, w[i]"
cp "$TB/workers.toml" "$CFG/workers.toml"

# ---- --watch piped: plain repeated blocks (no cursor control), SIGINT exits 0.
timeout --preserve-status -k 5 -s INT 3 "$RCH" fleet status --watch >"$TMP/watch" 2>"$TMP/watch.err" &
BACKGROUND+=($!)
set +e; wait $!; rc=$?; set -e
[[ $rc == 0 ]] || fail "status --watch exited $rc on SIGINT: $(cat "$TMP/watch.err")"
blocks=$(grep -c '^rch fleet status — [0-9:]\{8\} (every 1s, Ctrl-C to stop)$' "$TMP/watch")
((blocks >= 2)) || fail "status --watch printed $blocks blocks: $(cat "$TMP/watch")"
(($(grep -c '^WORKER ' "$TMP/watch") == blocks)) || fail "a block without its table header: $(cat "$TMP/watch")"
for k in 1 2 3 4; do
  (($(grep -cE "^w$k +rchtest@127\.0\.0\.1:" "$TMP/watch") >= blocks)) || fail "w$k missing from a block: $(cat "$TMP/watch")"
done
! grep -q $'\e' "$TMP/watch" || fail "escape sequences in piped --watch output"

# ---- verify: a clean fleet.
deploy 0 --worker w3 --version "$OWN"
expect_exit 0 "$RCH" fleet verify --json
jcheck '
assert d["ok"] is True and d["fleet_version"] == os.environ["OWN"], d
assert [x["worker_id"] for x in d["workers"]] == ["w1", "w2", "w3", "w4"], d
for x in d["workers"]:
    assert x == {"worker_id": x["worker_id"], "reachable": True, "version": os.environ["OWN"], "ok": True, "findings": []}, x'
expect_exit 0 "$RCH" fleet verify
contains "$OUT" "fleet verified: every worker matches its manifest and runs $OWN"

# ---- One problem per worker: w1 binary modified, w2 current dangling,
# w3 bin/rch-wkr a plain file, w4 an unhealthy agent (with a matching manifest).
r1=$(root_of 1) r2=$(root_of 2) r3=$(root_of 3) r4=$(root_of 4)
printf 'tampered' >>"$r1/versions/v$OWN/rch-wkr"
MOD_SHA=$(sha_of "$r1/versions/v$OWN/rch-wkr"); export MOD_SHA
"$r1/bin/rch-wkr" --version >/dev/null || fail "the modified binary no longer runs (the test needs it to)"
mv "$r2/versions/v$OWN" "$r2/versions/gone"
rm "$r3/bin/rch-wkr" && cp "$RCH_WKR" "$r3/bin/rch-wkr"
cp "$RCH_WKR_UNHEALTHY" "$r4/versions/v$OWN/rch-wkr"
sed -i "s/$OWN_SHA/$UNHEALTHY_SHA/" "$r4/versions/v$OWN/manifest.json"
grep -q "$UNHEALTHY_SHA" "$r4/versions/v$OWN/manifest.json" || fail "manifest edit"
snap_all tampered
expect_exit 1 "$RCH" fleet verify --json
jcheck '
OWN, ROOT = os.environ["OWN"], os.environ["TB"] + "/w%d/root"
w = {x["worker_id"]: x for x in d["workers"]}
assert d["ok"] is False and all(x["ok"] is False and x["reachable"] for x in d["workers"]), d
f = w["w1"]["findings"]
size = os.path.getsize(os.environ["RCH_WKR"])
assert f == ["versions/v%s/rch-wkr was modified: sha256 %s, manifest says %s (%d bytes, manifest says %d)"
  % (OWN, os.environ["MOD_SHA"], os.environ["OWN_SHA"], size + 8, size)], f
f = w["w2"]["findings"]
assert f[0] == "current -> versions/v%s is dangling: no rch-wkr there" % OWN, f
assert "rch-wkr health did not answer" in f, f
f = w["w3"]["findings"]
assert f[0] == "bin/rch-wkr -> '"''"', expected ../current/rch-wkr" and not any("sha256" in x for x in f), f
f = w["w4"]["findings"]
assert len(f) == 1 and f[0].startswith("unhealthy: "), f'
same_as tampered 1 2 3 4
expect_exit 1 "$RCH" fleet verify
contains "$OUT" "verification found problems"
grep -qE "^w1 +$OWN +FAIL +versions/v$OWN/rch-wkr was modified" <<<"$OUT" || fail "verify table: $OUT"
# Each problem alone (--worker) fails the verification.
for k in 1 2 3 4; do
  expect_exit 1 "$RCH" fleet verify --worker "w$k" --json
  jcheck 'assert [x["worker_id"] for x in d["workers"]] == ["w'$k'"] and not d["ok"] and d["workers"][0]["findings"], d'
done

# ---- A straggler: three workers on 0.1.0, w4 on 0.2.0 (each install intact).
reset_workers
deploy 0
deploy 0 --version "$NEXT" --worker w4
expect_exit 1 "$RCH" fleet verify --json
jcheck '
w = {x["worker_id"]: x for x in d["workers"]}
assert d["ok"] is False and d["fleet_version"] == os.environ["OWN"], d
assert w["w4"]["findings"] == ["straggler: runs %s, the fleet runs %s" % (os.environ["NEXT"], os.environ["OWN"])], w["w4"]
assert all(w[i]["ok"] and w[i]["findings"] == [] for i in ("w1", "w2", "w3")), w'

echo "fleet_ops_status_test: ok"
