#!/usr/bin/env bash
# A worker's output is capped ([defaults] max_output_bytes, 1 MiB per stream),
# against the real sshd testbed and a hostile agent whose `drain` streams
# zeros forever and whose `health` prints 100 MB: rch fleet deploy
# --drain-first fails that worker with a truncation/timeout message while the
# others complete, and still writes result.json and the history record;
# fleet status and fleet verify answer with a short message. Every run stays
# far below 200 MB of RSS and prints a bounded amount.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

# hostile K VER: worker K runs, as VER, an agent that floods whoever reads it.
hostile() {
  local r
  r=$(root_of "$1")
  mkdir -p "$r/versions/v$2" "$r/bin"
  sed "s/@VER@/$2/" >"$r/versions/v$2/rch-wkr" <<'EOF'
#!/bin/sh
case "$1" in
  --version) echo "rch-wkr @VER@" ;;
  drain) exec cat /dev/zero ;;
  health) head -c 100000000 /dev/zero | tr '\0' x ;;
esac
EOF
  chmod 755 "$r/versions/v$2/rch-wkr"
  ln -s "versions/v$2" "$r/current"
  ln -s ../current/rch-wkr "$r/bin/rch-wkr"
  chown -R --reference="$TB/w1/root" "$r"
}

# measured WANT_EXIT CMD…: like expect_exit; $RSS_MB is the command's peak RSS.
measured() {
  local want=$1 got
  shift
  read -r RSS_KB got < <(python3 -c '
import resource, subprocess, sys
with open(sys.argv[1] + "/out", "wb") as out, open(sys.argv[1] + "/err", "wb") as err:
    rc = subprocess.call(sys.argv[2:], stdout=out, stderr=err)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)' "$TMP" "$@")
  OUT=$(cat "$TMP/out")
  ERR=$(cat "$TMP/err")
  RSS_MB=$((RSS_KB / 1024))
  [[ $got == "$want" ]] || fail "exit $got (want $want) from: $* | stdout: ${OUT:0:2000} | stderr: ${ERR:0:2000}"
  [[ $ERR != *PANIC* ]] || fail "Lua panicked: ${ERR:0:2000}"
  ((RSS_MB < 200)) || fail "peak RSS $RSS_MB MB (limit 200 MB) from: $*"
  local printed
  printed=$(cat "$TMP/out" "$TMP/err" | wc -c)
  ((printed < 65536)) || fail "printed $printed bytes from: $*"
  echo "ok: $* (peak RSS $RSS_MB MB, printed $printed bytes)"
}

# by_id 'PYTHON': runs PYTHON with w = worker id -> entry of the status/verify JSON in $OUT.
by_id() {
  python3 -c "import json, sys
w = {x['worker_id']: x for x in json.loads(sys.stdin.read())['workers']}
$1" <<<"$OUT" || fail "JSON check failed:$1
--- stdout: ${OUT:0:4000}"
}

# ---- deploy --drain-first: w2's drain floods until its deadline (drain timeout + 30 s).
hostile 2 0.0.1
measured 1 "$RCH" fleet deploy --no-toolchain --json --drain-first --drain-timeout 1
json '
assert d["outcome"] == "failed", d
assert d["counts"] == {"completed": 3, "failed": 1, "skipped": 0, "rolled_back": 0, "aborted": 0}, d["counts"]
w = st["w2"]
assert w["status"] == "Failed" and w["error"].startswith("drain: "), w
assert "timed out" in w["error"] and "(stdout truncated at 1 MiB)" in w["error"], w["error"]
assert len(w["error"]) < 1000, len(w["error"])
drain = [s for s in w["steps"] if s["name"] == "drain"][0]
assert drain["status"] == "failed" and "truncated" in drain["output"], drain
assert all(st[i]["status"] == "Completed" for i in ("w1", "w3", "w4")), d'
DEP=$(json 'print(d["id"])')
[[ -s $RCH_STATE_DIR/deployments/$DEP/result.json ]] || fail "no result.json for $DEP"
DEP=$DEP py '
r = json.load(open(os.environ["RCH_STATE_DIR"] + "/deployments/" + os.environ["DEP"] + "/result.json"))
assert r["outcome"] == "failed" and r["counts"]["failed"] == 1, r
h = [x for x in load(os.environ["RCH_STATE_DIR"] + "/history.jsonl") if x["id"] == os.environ["DEP"]]
assert len(h) == 1 and h[0]["outcome"] == "failed" and h[0]["workers"]["w2"] == "Failed", h'
# w2 still runs what it ran (nothing was installed over it); the others got the agent.
[[ $(readlink "$(root_of 2)/current") == versions/v0.0.1 ]] || fail "w2's current moved"
for k in 1 3 4; do installed "$k" "$OWN" "$OWN_SHA"; done

# ---- fleet status and verify against an agent whose health prints 100 MB.
reset_workers
hostile 3 0.0.1
measured 0 "$RCH" fleet status --json
by_id '
assert w["w3"]["version"] == "0.0.1", w["w3"]
assert "health" in w["w3"]["error"] and "(stdout truncated at 1 MiB)" in w["w3"]["error"], w["w3"]
assert all(w[i]["error"] is None for i in ("w1", "w2", "w4")), w'
measured 0 "$RCH" fleet status
grep -qE '^w3 .*stdout truncated at 1 MiB' <<<"$OUT" || fail "status table, w3: $OUT"
measured 1 "$RCH" fleet verify --json
by_id '
assert not w["w3"]["ok"] and any("(stdout truncated at 1 MiB)" in f for f in w["w3"]["findings"]), w["w3"]'
measured 1 "$RCH" fleet verify
contains "$OUT" "stdout truncated at 1 MiB"

# ---- The cap is config.toml's [defaults] max_output_bytes.
write_config $'max_output_bytes = 65536\n'
measured 0 "$RCH" fleet status --json --worker w3
by_id 'assert "(stdout truncated at 64 KiB)" in w["w3"]["error"], w'

# ---- A deployment stopped outside any worker (here the --audit-log's disk is full) still ends
# with result.json and its history record, and touches no worker.
write_config
reset_workers
mkdir -p "$TMP/full"
mount -t tmpfs -o size=64k,mode=0755 tmpfs "$TMP/full" || fail "cannot mount a tmpfs for the full disk (run as root)"
trap 'umount "$TMP/full" 2>/dev/null || true; deploy_cleanup' EXIT
head -c 128k /dev/zero >"$TMP/full/fill" 2>/dev/null || true
measured 1 "$RCH" fleet deploy --no-toolchain --json --audit-log "$TMP/full/audit.jsonl"
umount "$TMP/full"
json '
assert d["outcome"] == "failed" and d["reason"].startswith("deployment stopped: audit log "), d["reason"]
assert "No space left on device" in d["reason"], d["reason"]
assert d["counts"] == {"completed": 0, "failed": 0, "skipped": 4, "rolled_back": 0, "aborted": 4}, d["counts"]'
contains "$ERR" "deployment stopped: audit log $TMP/full/audit.jsonl"
DEP=$(json 'print(d["id"])') py '
r = json.load(open(os.environ["RCH_STATE_DIR"] + "/deployments/" + os.environ["DEP"] + "/result.json"))
assert r["outcome"] == "failed" and r["counts"]["aborted"] == 4, r
h = [x for x in load(os.environ["RCH_STATE_DIR"] + "/history.jsonl") if x["id"] == os.environ["DEP"]]
assert len(h) == 1 and h[0]["outcome"] == "failed", h'
for k in 1 2 3 4; do no_agent "$k"; done
