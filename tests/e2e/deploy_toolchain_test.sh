#!/usr/bin/env bash
# The toolchain step against the real sshd testbed, on a worker without a
# route to the internet: a fake rustup (first on w1's PATH, in the shim dir
# the testbed's sshd puts there) answers `toolchain list` from a file, logs every call and
# fails anything that would need the network. The step runs before install:
# its failure leaves the previous agent running, nothing rolled back.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

FAKE=$TMP/fake
mkdir -p "$FAKE/bin"
cat >"$FAKE/bin/rustup" <<EOF
#!/bin/sh
# Test double: offline rustup.
echo "\$*" >>"$FAKE/calls"
case "\$1 \$2" in
  "toolchain list") cat "$FAKE/list"; exit 0 ;;
esac
echo "error: could not resolve host: static.rust-lang.org (offline test worker)" >&2
exit 1
EOF
chmod 755 "$FAKE/bin/rustup"
: >"$FAKE/calls"
chmod 777 "$FAKE"
chmod 666 "$FAKE/calls"
chmod 755 "$TMP" # the worker's login user runs the fake

# The fake goes into w1's shim dir, first on its sessions' PATH (reset_workers empties it).
ln -s "$FAKE/bin/rustup" "$TB/w1/shim/rustup"

# tc_deploy WANT_EXIT ARGS…: rch fleet deploy --json ARGS… on w1, with the toolchain step.
tc_deploy() {
  local want=$1; shift
  : >"$FAKE/calls"
  expect_exit "$want" "$RCH" fleet deploy --json --worker w1 "$@"
}
calls() { cat "$FAKE/calls"; }

# ---- (a) The toolchain is installed: the deploy completes and touches no network.
printf 'stable-x86_64-unknown-linux-gnu (default)\nnightly-2024-01-01-x86_64-unknown-linux-gnu\n' >"$FAKE/list"
tc_deploy 0 --version "$OWN"
json '
w = st["w1"]
assert w["status"] == "Completed", w
names = [s["name"] for s in w["steps"]]
assert names == ["preflight", "transfer", "toolchain", "install", "verify"], names
tc = [s for s in w["steps"] if s["name"] == "toolchain"][0]
assert tc["output"] == "stable: already installed", tc'
[[ $(calls) == "toolchain list" ]] || fail "rustup was asked more than the toolchain list: $(calls)"
installed 1 "$OWN" "$OWN_SHA"

# ---- [toolchain] rust names the toolchain: an installed nightly is a no-op just the same.
write_config $'[toolchain]\nrust = "nightly-2024-01-01"\n'
tc_deploy 0 --version "$OWN" --force
json '
tc = [s for s in st["w1"]["steps"] if s["name"] == "toolchain"][0]
assert tc["output"] == "nightly-2024-01-01: already installed", tc'
[[ $(calls) == "toolchain list" ]] || fail "rustup was asked more than the toolchain list: $(calls)"
write_config

# ---- (b) The toolchain is missing and cannot be installed offline: w1 fails at
# the toolchain step saying so, and still runs the agent it had (not rolled back).
printf 'nightly-2024-01-01-x86_64-unknown-linux-gnu\n' >"$FAKE/list"
stage "$NEXT" "$RCH_WKR_NEXT"
snap 1 >"$TMP/before_b"
tc_deploy 1 --version "$NEXT"
json '
w = st["w1"]
assert w["status"] == "Failed", w
assert w["error"].startswith("toolchain: toolchain stable is missing and could not be installed: "), w["error"]
assert "could not resolve host" in w["error"], w["error"]
assert [s["name"] for s in w["steps"]] == ["preflight", "transfer", "toolchain"], w["steps"]'
contains "$(calls)" "toolchain install stable --profile minimal"
installed 1 "$OWN" "$OWN_SHA"
py '
ev = [e for e in audit() if e.get("worker_id") == "w1" and e["event_type"] in ("WorkerFailed", "WorkerRolledBack",
      "WorkerInstallStarted")]
last = [e["event_type"] for e in ev][-1]
assert last == "WorkerFailed", ev
assert ev[-1]["details"]["rolled_back"] is False, ev[-1]'

# ---- (c) [toolchain] update = true: the update is attempted; offline it fails as "not updated".
printf 'stable-x86_64-unknown-linux-gnu (default)\n' >"$FAKE/list"
write_config $'[toolchain]\nupdate = true\n'
tc_deploy 1 --version "$NEXT"
json '
w = st["w1"]
assert w["status"] == "Failed", w
assert w["error"].startswith("toolchain: toolchain stable is installed but was not updated: "), w["error"]'
contains "$(calls)" "update stable --no-self-update"
installed 1 "$OWN" "$OWN_SHA"
write_config

# ---- Once the network is back (the fake installs), the same deploy goes through.
cat >"$FAKE/bin/rustup" <<EOF
#!/bin/sh
echo "\$*" >>"$FAKE/calls"
[ "\$1 \$2" = "toolchain list" ] && { cat "$FAKE/list"; exit 0; }
exit 0
EOF
printf '\n' >"$FAKE/list"
tc_deploy 0 --version "$NEXT"
json '
w = st["w1"]
assert w["status"] == "Completed", w
tc = [s for s in w["steps"] if s["name"] == "toolchain"][0]
assert tc["output"] == "stable: installed", tc'
installed 1 "$NEXT" "$NEXT_SHA"
echo "PASS"
