#!/usr/bin/env bash
# Read-only work runs at [defaults] probe_parallel, changes at --parallel
# (issue 16, item 5), against the sshd testbed: an rch-wkr stand-in on every
# worker counts how many copies of itself run at once (each call lasts 1.5 s),
# and `ss` counts the testbed's open SSH connections while a command runs.
#  - fleet status and verify probe probe_parallel workers at once, never more,
#    and keep no more sessions open than that;
#  - an unchanged redeploy decides "already there" at probe_parallel, with
#    --parallel 1, and takes no controller lease;
#  - a deploy that changes every worker still changes one at a time under
#    --parallel 1, over one SSH connection per worker.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
reset_workers
# The login user writes the counters: a directory it can reach (not under $TMP, mode 700).
COUNT=$(mktemp -d /tmp/rch-probe-count.XXXXXX)
chmod 777 "$COUNT"
trap 'reset_workers; rm -rf "$TMP" "${COUNT:?}"' EXIT

deploy 0 --worker 'w[1-4]'
# The stand-in: bin/rch-wkr becomes a script (the real binary stays in
# versions/, so the worker still reads as "already at $OWN").
stand_in() {
  local k root
  for k in 1 2 3 4; do
    root=$(root_of "$k")
    rm "$root/bin/rch-wkr"
    cat >"$root/bin/rch-wkr" <<EOF
#!/bin/sh
d=$COUNT
exec 9>>"\$d/lock"
flock 9; n=\$((\$(cat "\$d/n") + 1)); echo \$n >"\$d/n"; [ \$n -le \$(cat "\$d/max") ] || echo \$n >"\$d/max"; flock -u 9
sleep 1.5
flock 9; echo \$((\$(cat "\$d/n") - 1)) >"\$d/n"; flock -u 9
case \$1 in
--version) echo "rch-wkr $OWN" ;;
health) echo '{"ok":true,"version":"$OWN","active_builds":0,"draining":false}' ;;
esac
EOF
    chmod 755 "$root/bin/rch-wkr"
    chown rchtest: "$root/bin/rch-wkr" 2>/dev/null || true
  done
}
restore_links() {
  local k
  for k in 1 2 3 4; do ln -sfn ../current/rch-wkr "$(root_of "$k")/bin/rch-wkr"; done
}
# ports as an ss filter: connections to any testbed sshd.
PORTS=$(for k in 1 2 3 4; do printf 'sport = :%s or ' "$(port_of "$k")"; done)
PORTS="( ${PORTS% or } )"
# measured CMD…: runs CMD (expect_exit 0/1 is the caller's), with $CONC = the most stand-ins
# running at once and $SESSIONS = the most SSH connections open at once meanwhile.
measured() {
  echo 0 >"$COUNT/n" && echo 0 >"$COUNT/max" && : >>"$COUNT/lock"
  chmod 666 "$COUNT/n" "$COUNT/max" "$COUNT/lock"
  rm -f "$TMP/sessions"
  (while :; do ss -Htn state established "$PORTS" | wc -l >>"$TMP/sessions"; sleep 0.05; done) &
  local poll=$!
  "$@"
  kill "$poll" && wait "$poll" 2>/dev/null || true
  CONC=$(cat "$COUNT/max")
  SESSIONS=$(sort -n "$TMP/sessions" | tail -n 1)
}

stand_in
write_config $'parallel = 1\nprobe_parallel = 2'
measured expect_exit 0 "$RCH" fleet status --json
json 'assert all(w["version"] == os.environ["OWN"] and w["error"] is None for w in d["workers"]), d'
((CONC == 2)) || fail "fleet status with probe_parallel = 2 ran $CONC probes at once"
((SESSIONS <= 2)) || fail "fleet status with probe_parallel = 2 had $SESSIONS SSH sessions open at once"
measured expect_exit 1 "$RCH" fleet verify --json # bin/rch-wkr is not the link verify wants
((CONC == 2)) || fail "fleet verify with probe_parallel = 2 ran $CONC probes at once"
((SESSIONS <= 2)) || fail "fleet verify with probe_parallel = 2 had $SESSIONS SSH sessions open at once"

write_config $'parallel = 1\nprobe_parallel = 4'
measured expect_exit 0 "$RCH" fleet status --json
((CONC == 4)) || fail "fleet status with probe_parallel = 4 and parallel = 1 ran $CONC probes at once"
# An unchanged fleet: decided at the probe width, no lease taken (controller.lock untouched).
for k in 1 2 3 4; do stat -c %Y "$(root_of "$k")/controller.lock"; done >"$TMP/locks.before"
sleep 1.1
measured deploy 0 --parallel 1
json 'assert d["counts"]["skipped"] == 4 and d["peak_parallelism"] == 0, d'
((CONC == 4)) || fail "an unchanged redeploy with --parallel 1 and probe_parallel = 4 probed $CONC at once"
for k in 1 2 3 4; do stat -c %Y "$(root_of "$k")/controller.lock"; done | cmp -s - "$TMP/locks.before" ||
  fail "an unchanged redeploy took the controller lease"

# A deploy that changes every worker: one at a time, one connection each.
accepted() { for k in 1 2 3 4; do grep -c 'Accepted publickey' "$TB/w$k/sshd.log" || true; done; }
restore_links
accepted >"$TMP/accepted.before"
measured deploy 0 --parallel 1 --force
json 'assert d["counts"]["completed"] == 4 and d["peak_parallelism"] == 1, d'
accepted >"$TMP/accepted.after"
paste "$TMP/accepted.before" "$TMP/accepted.after" | awk '$2 - $1 != 1 { bad = 1 } END { exit bad }' ||
  fail "connections per worker (before, after): $(paste "$TMP/accepted.before" "$TMP/accepted.after" | tr '\n\t' '; ')"
((SESSIONS <= 4)) || fail "the deploy had $SESSIONS SSH sessions open at once"
for k in 1 2 3 4; do installed "$k" "$OWN" "$OWN_SHA"; done

# probe_parallel is checked like every other key.
write_config $'probe_parallel = 0'
expect_exit 2 "$RCH" fleet status
contains "$ERR" "probe_parallel"
echo "probe_parallel_test: ok"
