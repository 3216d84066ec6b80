#!/usr/bin/env bash
# One model of the worker: the simulated fleet (RCH_MOCK_SSH=1, core/transport/sim_fleet.cpp) must do
# what the real remote scripts (lua/rch/deploy/remote_steps.lua over ssh) do. One scenario runs twice,
# through the sshd testbed and through the simulator, each side with its own state dir:
#   install on fresh workers, a dry run, an upgrade with --drain-first, a redeploy that is skipped,
#   a failure after install (--verify and an unhealthy agent: rolled back to the previous version, and to
#   no agent on a fresh worker; a different build of the running version refused at preflight),
#   rch fleet verify, rch fleet rollback (to the recorded version, --to-version on a worker without an
#   agent, --dry-run), a downgrade over the failed build's directory, drain and undrain with and without
#   an agent, a deploy while draining, a reinstall of a version already on the worker.
# After each command its --json document (ids, times, hosts and the worker's own words masked) and every
# worker's layout (current, bin/rch-wkr, versions/ with the bytes of each rch-wkr, the current
# manifest's version and sha256, the drain marker) go to one transcript per side. The real layout is
# read from the worker roots on this machine; the simulator's through rch.transport.sim (its inspect,
# which bypasses faults, and its preflight). The transcripts must be identical, and each command must
# exit as the scenario intends.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

# The worker's tools do not depend on the transport under test: left out of the preflight checks.
write_config '[preflight]
rsync = "ignore"
zstd = "ignore"
rustup = "ignore"
'

# transcript.py DIR AUDIT [check]: the steps recorded in DIR (NN.cmd, NN.kind, NN.out: the --json
# document, NN.layout, NN.expect) and the events of the audit log AUDIT as one text, without what
# legitimately differs between the two transports (ids, times, hosts, roots, what a worker's shell or
# agent said). With `check`, each step's workers must end as NN.expect says (the scenario does what it
# claims to).
cat >"$TMP/transcript.py" <<'EOF_PY'
import glob, json, os, re, sys
LABEL = {os.environ["OWN_SHA"]: "own", os.environ["NEXT_SHA"]: "next", os.environ["UNHEALTHY_SHA"]: "unhealthy"}
def sha(s): return None if s is None else LABEL.get(s, "other:" + s[:12])
def words(s):
    if s is None: return None
    s = re.sub(re.escape(os.environ["TB"]) + r"/w\d+/root", "<root>", s)
    s = re.sub(r"(failed \(exit \d+\)): .*", r"\1: <worker's words>", s)
    s = re.sub(r"(health check failed): .*", r"\1: <agent's words>", s)
    # How the bytes travelled (plain, zstd, a patch) is the real transport's business: the
    # simulator always sends the plain file; the worker must end the same either way.
    s = re.sub(r", sent as [^(]*\(\d+ bytes\)( against \S+)?", "", s)
    return re.sub(r"\d+\.\d MB in \d+\.\d+s", "<MB> in <secs>", s)
def pick(d, keys): return {k: d.get(k) for k in keys}
def deploy(d):
    out = pick(d, ["target_version", "strategy", "outcome", "reason", "resumed", "counts"])
    out["workers"] = [dict(pick(w, ["worker_id", "status", "current_version", "target_version"]),
                           error=words(w.get("error")),
                           steps=[[s["name"], s["status"], words(s.get("output"))] for s in w["steps"]])
                      for w in d["workers"]]
    return out
def dry_run(d):
    # The estimates come from the facts (what is on the worker), not from measurements: compared too.
    return {"estimated_duration_secs": d["estimated_duration_secs"], "resources": d["resource_requirements"],
            "predictions": [dict(pick(p, ["worker_id", "current_version", "target_version", "action",
                                          "estimated_transfer_mb", "estimated_time_secs"]),
                                 preflight_issues=[words(i) for i in p["preflight_issues"]])
                            for p in d["predictions"]],
            "potential_issues": [dict(pick(i, ["severity", "worker_id", "check"]), issue=words(i["issue"]))
                                 for i in d["potential_issues"]]}
def status(d):
    return [dict(pick(w, ["worker_id", "reachable", "version", "versions", "draining", "active_builds"]),
                 root=words(w["root"]), error=words(w["error"]),
                 last=w["last_deployment"] and pick(w["last_deployment"], ["status", "target_version"]))
            for w in d["workers"]]
def verify(d):
    return dict(pick(d, ["ok", "fleet_version"]),
                workers=[dict(pick(w, ["worker_id", "reachable", "version", "ok"]),
                              findings=[words(f) for f in w["findings"]]) for w in d["workers"]])
def rollback(d):
    return dict(pick(d, ["dry_run", "counts"]),
                workers=[dict(pick(w, ["worker_id", "status", "from_version", "to_version"]),
                              error=words(w["error"])) for w in d["workers"]])
def drain(d):
    return [dict(pick(w, ["worker_id", "drained", "undrained", "active_builds"]), error=words(w["error"]))
            for w in d["workers"]]
KINDS = {"deploy": deploy, "dry-run": dry_run, "status": status, "verify": verify, "rollback": rollback,
         "drain": drain}
# A layout: the simulator's as JSON (worker id -> {current, bin, versions, manifest, draining}), the real
# one as lines "ID current|bin|draining VALUE", "ID version vX SHA256", "ID manifest JSON".
def layout(text):
    if text.startswith("{"):
        raw = json.loads(text)
    else:
        raw = {}
        for line in text.splitlines():
            wid, key, value = (line.split(" ", 2) + [""])[:3]
            w = raw.setdefault(wid, {"versions": {}})
            if key == "version":
                v, h = value.split(" ")
                w["versions"][v] = h or None
            else:
                w[key] = json.loads(value) if key == "manifest" else value
    out = {}
    for wid, w in sorted(raw.items()):
        m = w.get("manifest")
        out[wid] = {"current": w.get("current") or None, "bin": w.get("bin") or None,
                    "versions": {v: sha(h) for v, h in sorted((w.get("versions") or {}).items())},
                    "manifest": m and {"version": m.get("version"), "sha256": sha(m.get("sha256"))},
                    "draining": w.get("draining") in (True, "1")}
    return out
def show(x): return json.dumps(x, indent=1, sort_keys=True)
def outcome(w):
    if "status" in w: return w["status"]
    return "drained" if w.get("drained") else "undrained" if w.get("undrained") else "error"
for cmd in sorted(glob.glob(sys.argv[1] + "/*.cmd")):
    base = cmd[:-4]
    print("## " + open(cmd).read().strip())
    text = open(base + ".out").read()
    try:
        d = json.loads(text)
    except ValueError:
        print("not JSON: " + text)
    else:
        want = open(base + ".expect").read().split()
        if sys.argv[3:] == ["check"] and want:
            got = ["%s=%s" % (w["worker_id"], outcome(w)) for w in d["workers"]]
            if got != want: raise SystemExit("%s: workers ended %s, the scenario wants %s" % (cmd, got, want))
        if isinstance(d, dict) and d.get("ok") is False and "exit_code" in d:  # the command's failure document
            print(show({"error": words(d.get("error")), "exit_code": d.get("exit_code")}))
        else:
            print(show(KINDS[open(base + ".kind").read().strip()](d)))
    print("## layout after it")
    print(show(layout(open(base + ".layout").read())))
# The audit log: per deployment (or rollback), each worker's events in order (workers run in parallel,
# so their events interleave in any order).
runs = {}
for line in open(sys.argv[2]):
    e = json.loads(line)
    runs.setdefault(e["deployment_id"], {}).setdefault(e["worker_id"] or "-", []).append(e["event_type"])
print("## audit events")
print(show(list(runs.values())))
EOF_PY

# The simulator's layout of every worker, through rch.transport.sim: inspect (the model's own state,
# no faults) for the links and the manifest, preflight for versions/ (and each one's bytes) and the
# drain marker.
cat >"$TMP/sim_layout.lua" <<'EOF_LUA'
local rch = require "rch"
local fleet = require "rch.fleet"
local sim = require "rch.transport.sim"
local by_id = fleet.each(assert(fleet.workers()), function(w, conn, root)
  local truth = assert(sim.inspect(w.id))
  local facts = assert(conn:preflight(root, "", 30))
  local versions = {}
  for v in tostring(facts.versions or ""):gmatch("v(%S+)") do
    versions["v" .. v] = assert(conn:preflight(root, v, 30)).target_sha256 or rch.json.null
  end
  return { current = truth.current_link, bin = truth.bin_link, manifest = truth.manifest or rch.json.null,
    versions = versions, draining = facts.draining }
end)
io.stdout:write(rch.json.encode(by_id), "\n")
EOF_LUA

# The layout of the real workers, read from their roots on this machine (see layout() above).
real_layout() {
  local k root v
  for k in 1 2 3 4; do
    root=$(root_of "$k")
    echo "w$k current $(readlink "$root/current" || true)"
    echo "w$k bin $(readlink "$root/bin/rch-wkr" || true)"
    for v in "$root"/versions/*/; do
      [[ -d $v ]] || continue
      v=${v%/}
      echo "w$k version ${v##*/} $(if [[ -f $v/rch-wkr ]]; then sha_of "$v/rch-wkr"; fi)"
    done
    if [[ -L $root/current && -f $root/current/manifest.json ]]; then
      echo "w$k manifest $(head -n 1 "$root/current/manifest.json")"
    fi
    echo "w$k draining $([[ -e $root/state/drain ]] && echo 1 || echo 0)"
  done
}

# step NAME KIND WANT_EXIT ARGS…: runs `rch fleet ARGS… --json` on this side and records the command,
# its exit code, its document and the layout after it in $TMP/$SIDE. SIM_FAULTS (the simulator's model
# of what the real agent does in this step) applies to the simulated side only; EXPECT lists how the
# step's workers end ("w1=Completed w2=RolledBack", drained, undrained, error).
N=0
step() {
  local name=$1 kind=$2 want=$3 got f; shift 3
  N=$((N + 1))
  f=$TMP/$SIDE/$(printf %02d "$N")
  if [[ $SIDE == sim ]]; then export RCH_SIM_FAULTS=${SIM_FAULTS:-}; fi
  set +e
  "$RCH" fleet "$@" --json >"$f.out" 2>"$TMP/err"
  got=$?
  set -e
  unset RCH_SIM_FAULTS
  # The real side must do what the scenario intends; the simulator's exit code is compared with it below.
  [[ $SIDE == sim || $got == "$want" ]] ||
    fail "step '$name': exit $got (want $want) from rch fleet $* | stdout: $(cat "$f.out") | stderr: $(cat "$TMP/err")"
  echo "$name: rch fleet $* (exit $got)" >"$f.cmd"
  echo "$kind" >"$f.kind"
  echo "${EXPECT:-}" >"$f.expect"
  if [[ $SIDE == sim ]]; then
    "$RCH" run "$TMP/sim_layout.lua" >"$f.layout" 2>"$TMP/err" || fail "sim layout: $(cat "$TMP/err")"
  else
    real_layout >"$f.layout"
  fi
}

scenario() {
  stage "$NEXT" "$RCH_WKR_NEXT"
  step "fresh fleet" status 0 status
  EXPECT="w4=error" step "drain a worker without an agent" drain 1 drain --worker w4 --timeout 5
  EXPECT="w1=Completed w2=Completed" step "install on fresh workers" deploy 0 deploy --no-toolchain --worker w1,w2
  step "dry run of the upgrade" dry-run 0 deploy --no-toolchain --dry-run --version "$NEXT"
  EXPECT="w1=Completed w3=Completed" step "upgrade (drained first) and a fresh install" deploy 0 \
    deploy --no-toolchain --version "$NEXT" --worker w1,w3 --drain-first
  EXPECT="w1=Skipped" step "redeploy: nothing to do" deploy 0 deploy --no-toolchain --version "$NEXT" --worker w1
  # The next build of $OWN fails its health check: on the simulator, its workers' agents are unhealthy.
  stage "$OWN" "$RCH_WKR_UNHEALTHY"
  EXPECT="w2=Failed w3=RolledBack w4=RolledBack" SIM_FAULTS=w2:unhealthy,w3:unhealthy,w4:unhealthy \
    step "verify fails after install" deploy 1 deploy --no-toolchain --verify --worker w2,w3,w4
  unstage "$OWN"
  step "status after the failure" status 0 status
  step "verify" verify 1 verify
  EXPECT="w1=RolledBack w2=Failed w4=Failed" step "rollback" rollback 1 rollback --worker w1,w2,w4
  EXPECT="w4=Failed" step "rollback to a version kept on a worker without an agent" rollback 1 \
    rollback --worker w4 --to-version "$OWN"
  EXPECT="w3=Completed" step "downgrade over the failed build's directory" deploy 0 deploy --no-toolchain --worker w3
  step "rollback dry run" rollback 1 rollback --dry-run
  EXPECT="w1=drained w2=drained w3=drained w4=error" step "drain every worker" drain 1 drain --timeout 5
  step "status while draining" status 0 status
  EXPECT="w1=Completed w2=Completed" step "deploy while draining, and a version already present" deploy 0 \
    deploy --no-toolchain --version "$NEXT" --worker w1,w2
  EXPECT="w1=undrained w2=undrained w3=undrained w4=error" step "undrain every worker" drain 1 undrain
  step "final status" status 0 status
  step "final verify" verify 1 verify
}

start=$SECONDS
SIDE=real N=0
export RCH_STATE_DIR=$TMP/real/state RCH_DATA_DIR=$TMP/real/data
mkdir -p "$TMP/real"
scenario
real_secs=$((SECONDS - start))
SIDE=sim N=0
export RCH_MOCK_SSH=1 RCH_STATE_DIR=$TMP/sim/state RCH_DATA_DIR=$TMP/sim/data
mkdir -p "$TMP/sim"
scenario
unset RCH_MOCK_SSH
python3 "$TMP/transcript.py" "$TMP/real" "$TMP/real/state/audit.jsonl" check >"$TMP/real.txt" ||
  fail "the scenario went otherwise on the real workers than it intends"
python3 "$TMP/transcript.py" "$TMP/sim" "$TMP/sim/state/audit.jsonl" >"$TMP/sim.txt"
diff -u --label real --label simulated "$TMP/real.txt" "$TMP/sim.txt" >"$TMP/diff" ||
  fail "the simulated fleet does not do what the real remote scripts do (real $real_secs s):
$(cat "$TMP/diff")"
echo "sim_conformance_test: ok ($(grep -c '^## .*(exit' "$TMP/real.txt") commands; real $real_secs s, simulated $((SECONDS - start - real_secs)) s)"
