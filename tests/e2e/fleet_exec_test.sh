#!/usr/bin/env bash
# rch fleet exec against the real sshd testbed: folding like clush -b (3
# different outputs among 6 workers), a worker exiting non-zero, an
# unreachable one, a worker printing 50 MB (capped and reported, rch's peak
# RSS under 200 MB), a hung command's timeout (the others finish), shell
# metacharacters in arguments running nothing, --no-fold streaming lines
# before the command ends, --shell, --json, --as-build refused on a draining
# worker, and the AdhocExec audit entries (not in the deployment history).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
WHOME=$(on 1 'printf %s "$HOME"')
[[ -n $WHOME ]] || fail "no HOME on the workers"
TOKEN=pwned-$$-$RANDOM
trap 'rm -rf "$WHOME"/rch-fold.* "$WHOME/$TOKEN"-?; deploy_cleanup' EXIT

# Six workers: w5 and w6 are second names for w1's and w2's sshd; w7 listens nowhere.
{
  cat "$TB/workers.toml"
  for k in 5 6; do
    printf '\n[[workers]]\nid = "w%d"\nhost = "127.0.0.1"\nuser = "rchtest"\nport = %s\n' "$k" "$(port_of $((k - 4)))"
    printf 'identity_file = "%s"\nroot = "%s"\n' "$TB/client/id_ed25519" "$TB/w$((k - 4))/root"
  done
} >"$CFG/workers.toml"
cp "$CFG/workers.toml" "$TMP/workers.six"
printf '\n[[workers]]\nid = "w7"\nhost = "127.0.0.1"\nuser = "rchtest"\nport = 1\nroot = "/tmp/none"\n' >>"$CFG/workers.toml"

# ---- Folding: each sshd port reads its own file in the login home; w1/w5, w2/w6, w3/w4 agree.
on 1 "echo alpha >rch-fold.$(port_of 1); echo beta >rch-fold.$(port_of 2); printf 'gamma\n2nd\n' >rch-fold.$(port_of 3); printf 'gamma\n2nd\n' >rch-fold.$(port_of 4)"
expect_exit 0 "$RCH" fleet exec --worker 'w[1-6]' -- sh -c 'cat "rch-fold.${SSH_CONNECTION##* }"'
want=$'---------------\nw[1,5] (exit 0)\n---------------\nalpha\n---------------\nw[2,6] (exit 0)\n---------------\nbeta\n---------------\nw[3-4] (exit 0)\n---------------\ngamma\n2nd'
[[ $OUT == "$want"$'\n'* ]] || fail "folded output: $OUT"
contains "$OUT" "exec: 6 workers, 6 exit 0, 0 failed, 0 unreachable"

# ---- Non-zero exit and an unreachable worker: listed apart, folded, with the re-run command; exit 1.
expect_exit 1 "$RCH" fleet exec --worker 'w[1-4,7]' --shell "[ \"\${SSH_CONNECTION##* }\" != $(port_of 3) ] || { echo bad >&2; exit 3; }; echo ok"
contains "$OUT" $'---------------\nw[1-2,4] (exit 0)\n---------------\nok\n'
contains "$OUT" $'---------------\nw3 (exit 3)\n---------------\nbad\n'
contains "$OUT" "exec: 5 workers, 3 exit 0, 1 failed, 1 unreachable"
grep -qE '^  exit != 0 +w3$' <<<"$OUT" || fail "no exit != 0 line: $OUT"
grep -qE '^  unreachable +w7$' <<<"$OUT" || fail "no unreachable line: $OUT"
grep -qE '^    w7: cannot connect to rchtest@127.0.0.1:1' <<<"$OUT" || fail "no error for w7: $OUT"
contains "$OUT" "re-run on them: rch fleet exec --worker 'w[3,7]' --shell '[ "
cp "$TMP/workers.six" "$CFG/workers.toml"

# ---- Shell metacharacters in arguments are data: nothing runs, the words come back as given.
args=("\$(touch $TOKEN-a)" "\`touch $TOKEN-b\`" "; touch $TOKEN-c" "| touch $TOKEN-d" "&& touch $TOKEN-e" "'\"*")
expect_exit 0 "$RCH" fleet exec --worker w1 -- printf '%s\n' "${args[@]}"
[[ $(sed -n '4,9p' <<<"$OUT") == "$(printf '%s\n' "${args[@]}")" ]] || fail "arguments changed: $OUT"
for c in a b c d e; do
  [[ ! -e $WHOME/$TOKEN-$c && ! -e $TOKEN-$c ]] || fail "an argument ran as shell code ($TOKEN-$c)"
done
# --shell is the explicit way to get a shell line.
expect_exit 0 "$RCH" fleet exec --worker w2 --shell 'echo $((6 * 7)) | tr 4 X'
contains "$OUT" $'\nX2\n'
expect_exit 2 "$RCH" fleet exec --worker w1
contains "$ERR" "fleet exec needs a command"

# ---- Worker output is sanitised: escape sequences are shown escaped.
expect_exit 0 "$RCH" fleet exec --worker w1 -- printf 'a\033[31mred\033]0;title\007\n'
contains "$OUT" 'a\x1b[31mred\x1b]0;title\x07'
[[ $OUT != *$'\033'* ]] || fail "a raw escape reached the terminal: $OUT"

# ---- 50 MB from one worker: capped at 1 MiB, reported, bounded memory; the others unaffected.
flood='if [ "${SSH_CONNECTION##* }" = '$(port_of 2)' ]; then head -c 50000000 /dev/zero | tr "\0" x; fi; echo done'
read -r RSS_KB rc < <(python3 -c '
import resource, subprocess, sys
with open(sys.argv[1] + "/out", "wb") as out, open(sys.argv[1] + "/err", "wb") as err:
    rc = subprocess.call(sys.argv[2:], stdout=out, stderr=err)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)' "$TMP" "$RCH" fleet exec --worker 'w[1-4]' --shell "$flood")
((rc == 0)) || fail "flood run exited $rc: $(head -c 2000 "$TMP/err")"
((RSS_KB < 200 * 1024)) || fail "peak RSS $((RSS_KB / 1024)) MB with a 50 MB flood"
printed=$(wc -c <"$TMP/out")
((printed < 1048576 + 4096)) || fail "printed $printed bytes: the cap did not hold"
grep -qE '^w2 \(exit 0\) \(stdout truncated at 1 MiB\)$' "$TMP/out" || fail "no truncation note: $(grep -v '^x' "$TMP/out" | head)"
grep -q '^w\[1,3-4\] (exit 0)$' "$TMP/out" || fail "the others: $(grep -v '^x' "$TMP/out" | head)"
echo "ok: 50 MB flood, peak RSS $((RSS_KB / 1024)) MB, printed $printed bytes"
expect_exit 0 "$RCH" fleet exec --worker w2 --json --shell "$flood"
json '
w = st["w2"]
assert w["truncated"] is True and len(w["stdout"]) == 1048576 and w["exit_code"] == 0, {k: v for k, v in w.items() if k != "stdout"}'

# ---- A hung command times out on its worker (reported; its process is killed); the others finish.
start=$SECONDS
expect_exit 1 "$RCH" fleet exec --timeout 2 --worker 'w[1-4]' --shell "if [ \"\${SSH_CONNECTION##* }\" = $(port_of 3) ]; then exec sleep 300; fi; echo finished"
((SECONDS - start < 20)) || fail "the timeout did not hold: $((SECONDS - start)) s"
contains "$OUT" $'w[1-2,4] (exit 0)\n---------------\nfinished'
grep -qE '^  timed out +w3$' <<<"$OUT" || fail "no timed out line: $OUT"
for _ in $(seq 1 40); do pgrep -u rchtest -x sleep >/dev/null || break; sleep 0.25; done
! pgrep -u rchtest -x sleep >/dev/null || fail "the timed-out command is still running: $(pgrep -u rchtest -a -x sleep)"

# ---- --no-fold streams `id: line` while the command still runs.
"$RCH" fleet exec --no-fold --worker 'w[1-2]' -- sh -c 'echo first; sleep 8; echo second; echo err >&2' \
  >"$TMP/stream.out" 2>"$TMP/stream.err" &
pid=$!
BACKGROUND+=("$pid")
for _ in $(seq 1 120); do [[ $(grep -c ': first$' "$TMP/stream.out") == 2 ]] && break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null || fail "rch ended before the check"
[[ $(sort "$TMP/stream.out") == $'w1: first\nw2: first' ]] || fail "not streamed while running: $(cat "$TMP/stream.out")"
wait "$pid" || fail "--no-fold run failed: $(cat "$TMP/stream.err")"
grep -q '^w1: second$' "$TMP/stream.out" && grep -q '^w2: second$' "$TMP/stream.out" || fail "stream: $(cat "$TMP/stream.out")"
grep -q '^w1: err$' "$TMP/stream.err" || fail "stderr stream: $(cat "$TMP/stream.err")"

# ---- --json: one document, each worker's exit code, stdout, stderr, duration, truncated flag.
expect_exit 1 "$RCH" fleet exec --json --worker 'w[1-2]' --shell "echo out; echo err >&2; [ \"\${SSH_CONNECTION##* }\" = $(port_of 1) ]"
json '
assert st["w1"]["exit_code"] == 0 and st["w2"]["exit_code"] == 1, d
for w in st.values():
    assert w["stdout"] == "out\n" and w["stderr"] == "err\n" and w["truncated"] is False and w["timed_out"] is False, w
    assert isinstance(w["duration_secs"], float) and 0 < w["duration_secs"] < 30 and w["error"] is None, w'

# ---- --as-build runs under rch-wkr exec (a lease) and is refused on a draining worker.
deploy 0 --worker 'w[1-4]'
expect_exit 0 "$RCH" fleet drain --worker w2 --timeout 5
expect_exit 1 "$RCH" fleet exec --as-build --worker 'w[1-4]' -- sh -c 'ls "$0"/state/leases | wc -l' "$TB"/w1/root
grep -qE '^  refused +w2$' <<<"$OUT" || fail "no refused line: $OUT"
contains "$OUT" "refused: the worker is draining (rch-wkr exec exit 75)"
contains "$OUT" "re-run on them: rch fleet exec --worker w2 --as-build --"
expect_exit 0 "$RCH" fleet undrain --worker w2
# Under --as-build the command holds a lease: w1's own lease count is 1 while it runs.
expect_exit 0 "$RCH" fleet exec --as-build --worker w1 -- sh -c 'ls "$0"/state/leases | wc -l' "$TB"/w1/root
contains "$OUT" $'---------------\nw1 (exit 0)\n---------------\n1\n'

# ---- Audit: AdhocExec entries in the hash chain, with the command and per-worker exit codes;
# nothing in the deployment history; @failed still names the last deployment's failures only.
py '
ev = [e for e in audit() if e["event_type"] == "AdhocExec"]
assert len(ev) >= 9, [e["event_type"] for e in audit()]
first = ev[0]
assert first["details"]["command"] == ["--", "sh", "-c", "cat \"rch-fold.${SSH_CONNECTION##* }\""], first
assert first["details"]["workers"] == "w[1-6]" and first["details"]["exit_codes"] == {f"w{k}": 0 for k in range(1, 7)}, first
assert first["deployment_id"].startswith("adhoc:") and first["user"] and first["machine"], first
second = ev[1]["details"]
assert second["exit_codes"] == {"w1": 0, "w2": 0, "w3": 3, "w4": 0, "w7": "unreachable"}, second
assert second["command"][0] == "--shell", second
hung = [e for e in ev if e["details"]["exit_codes"].get("w3") == "timed out"]
assert len(hung) == 1, ev
h = load(os.environ["RCH_STATE_DIR"] + "/history.jsonl")
assert len(h) == 1 and h[0]["workers"] == {f"w{k}": "Completed" for k in range(1, 5)}, h'
expect_exit 0 "$RCH" fleet audit verify "$RCH_STATE_DIR/audit.jsonl"
contains "$OUT" "hash chain intact"
expect_exit 2 "$RCH" fleet status --worker @failed
contains "$ERR" "'@failed' matches no worker"
echo "fleet_exec_test: ok"
