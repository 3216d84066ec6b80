#!/usr/bin/env bash
# rch fleet copy against the real sshd testbed: a copy to ~/… verified on the
# worker (no temp file left), skipped when the sha256 and mode match, only a
# chmod when only the mode differs, a relative and an absolute DEST, a DEST
# directory the login user cannot write (fails, the old file untouched), a
# DEST that is a directory, an unreachable worker, bad SRC/--mode/DEST
# (exit 2), --json, and the AdhocCopy audit entries.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"
WHOME=$(on 1 'printf %s "$HOME"')
[[ -n $WHOME ]] || fail "no HOME on the workers"
ABS=$(mktemp -d /tmp/rch-copy-test.XXXXXX)
chown rchtest: "$ABS"
trap 'rm -rf "$WHOME/rch-copy" "$ABS"; deploy_cleanup' EXIT
on 1 'rm -rf rch-copy && mkdir rch-copy'
head -c 3000000 /dev/urandom >"$TMP/src.bin"
SHA=$(sha_of "$TMP/src.bin"); export SHA
F=$WHOME/rch-copy/f.bin
parts() { find "$WHOME/rch-copy" "$ABS" -name '*.rch-part.*'; }

# ---- First copy to ~/…: copied, verified bytes, mode 0644, owned by the login user, no temp file.
expect_exit 0 "$RCH" fleet copy --worker w1 "$TMP/src.bin" '~/rch-copy/f.bin'
contains "$OUT" "1 copied, 0 mode fixed, 0 skipped, 0 failed; 3.0 MB sent"
[[ $(sha_of "$F") == "$SHA" && $(stat -c '%a %U' "$F") == "644 rchtest" ]] || fail "copied file: $(stat -c '%a %U %s' "$F")"
[[ -z $(parts) ]] || fail "temp files left: $(parts)"
ino=$(stat -c %i "$F")

# ---- Same sha256 and mode: skipped, nothing sent, the file untouched.
expect_exit 0 "$RCH" fleet copy --worker w1 "$TMP/src.bin" '~/rch-copy/f.bin'
contains "$OUT" "0 copied, 0 mode fixed, 1 skipped, 0 failed; 0.0 MB sent"
[[ $(stat -c %i "$F") == "$ino" ]] || fail "a skipped copy replaced the file"

# ---- Same bytes, other mode: only the mode changes (same inode).
expect_exit 0 "$RCH" fleet copy --worker w1 --mode 0600 "$TMP/src.bin" '~/rch-copy/f.bin'
contains "$OUT" "0 copied, 1 mode fixed, 0 skipped, 0 failed"
[[ $(stat -c '%a %i' "$F") == "600 $ino" ]] || fail "mode fix: $(stat -c '%a %i' "$F"), want 600 $ino"

# ---- Other bytes: copied again (a new file renamed over the old one); relative DEST = login home.
on 1 'echo changed >rch-copy/f.bin'
expect_exit 0 "$RCH" fleet copy --worker w1 --mode 755 "$TMP/src.bin" rch-copy/f.bin
contains "$OUT" "1 copied, 0 mode fixed, 0 skipped, 0 failed"
[[ $(sha_of "$F") == "$SHA" && $(stat -c %a "$F") == 755 ]] || fail "recopy: $(stat -c '%a' "$F")"

# ---- Absolute DEST on every worker (one shared host here: each worker copies or finds it done).
expect_exit 0 "$RCH" fleet copy --worker 'w[1-4]' "$TMP/src.bin" "$ABS/g.bin"
[[ $OUT =~ ([0-9])\ copied,\ 0\ mode\ fixed,\ ([0-9])\ skipped,\ 0\ failed ]] &&
  ((BASH_REMATCH[1] + BASH_REMATCH[2] == 4 && BASH_REMATCH[1] >= 1)) || fail "abs copy: $OUT"
[[ $(sha_of "$ABS/g.bin") == "$SHA" ]] || fail "abs copy: wrong bytes"

# ---- A DEST directory the login user cannot write: failed, named, exit 1; the old file stays whole.
mkdir "$ABS/ro"
echo old >"$ABS/ro/h.bin"
chmod 755 "$ABS/ro"
chown root: "$ABS/ro" "$ABS/ro/h.bin"
expect_exit 1 "$RCH" fleet copy --worker 'w[1-2]' "$TMP/src.bin" "$ABS/ro/h.bin"
contains "$OUT" "0 copied, 0 mode fixed, 0 skipped, 2 failed"
grep -qE '^  failed +w\[1-2\]$' <<<"$OUT" || fail "no failed line: $OUT"
grep -qE "^    w\[1-2\]: upload to $ABS/ro/h.bin failed \(exit 3\): mktemp: .*Permission denied" <<<"$OUT" || fail "the folded error: $OUT"
contains "$OUT" "re-run on them: rch fleet copy --worker 'w[1-2]' --mode 0644 $TMP/src.bin $ABS/ro/h.bin"
[[ $(cat "$ABS/ro/h.bin") == old && -z $(ls -A "$ABS/ro" | grep -v '^h.bin$') ]] || fail "the read-only dir changed: $(ls -la "$ABS/ro")"

# ---- DEST is a directory; a missing DEST directory (not created): both fail, named.
expect_exit 1 "$RCH" fleet copy --worker w1 "$TMP/src.bin" '~/rch-copy'
contains "$OUT" "rch-copy is a directory: name the file in it"
expect_exit 1 "$RCH" fleet copy --worker w1 "$TMP/src.bin" '~/rch-copy/no/such/x.bin'
contains "$OUT" "No such file or directory"
[[ ! -e $WHOME/rch-copy/no ]] || fail "a missing directory was created"

# ---- An unreachable worker is a failure with its error.
printf '\n[[workers]]\nid = "w9"\nhost = "127.0.0.1"\nuser = "rchtest"\nport = 1\n' >>"$CFG/workers.toml"
expect_exit 1 "$RCH" fleet copy --worker w1,w9 "$TMP/src.bin" '~/rch-copy/f.bin'
grep -qE '^  unreachable +w9$' <<<"$OUT" || fail "no unreachable line: $OUT"
contains "$OUT" "w9: cannot connect to rchtest@127.0.0.1:1"
cp "$TB/workers.toml" "$CFG/workers.toml"

# ---- Usage errors: exit 2, named, before any worker is touched.
expect_exit 2 "$RCH" fleet copy --worker w1 "$TMP/nope.bin" '~/x'
contains "$ERR" "cannot read $TMP/nope.bin"
expect_exit 2 "$RCH" fleet copy --worker w1 --mode 0999 "$TMP/src.bin" '~/x'
contains "$ERR" "--mode 0999 is not an octal file mode"
expect_exit 2 "$RCH" fleet copy --worker w1 "$TMP/src.bin" '~other/x'
contains "$ERR" "DEST '~other/x': use an absolute path"

# ---- --json (the run with w9 above set the mode back to 0644).
expect_exit 0 "$RCH" fleet copy --json --worker w2 --mode 0755 "$TMP/src.bin" '~/rch-copy/f.bin'
json '
assert d["sha256"] == os.environ["SHA"] and d["size"] == 3000000 and d["mode"] == "755", d
assert st["w2"] == {"worker_id": "w2", "status": "mode fixed", "error": None}, d'

# ---- Audit: AdhocCopy with the file's sha256, DEST and each worker's outcome; no deployment.
py '
ev = [e for e in audit() if e["event_type"] == "AdhocCopy"]
assert len(ev) == 10, len(ev)
assert ev[0]["details"]["sha256"] == os.environ["SHA"] and ev[0]["details"]["dest"] == "~/rch-copy/f.bin", ev[0]
assert ev[0]["details"]["results"] == {"w1": "copied"} and ev[1]["details"]["results"] == {"w1": "skipped"}, ev[:2]
assert ev[2]["details"]["results"] == {"w1": "mode fixed"} and ev[2]["details"]["mode"] == "600", ev[2]
ro = [e for e in ev if e["details"]["dest"].endswith("/ro/h.bin")][0]
assert ro["details"]["results"] == {"w1": "failed", "w2": "failed"} and ro["details"]["workers"] == "w[1-2]", ro
assert not os.path.exists(os.environ["RCH_STATE_DIR"] + "/history.jsonl"), "history written"'
expect_exit 0 "$RCH" fleet audit verify "$RCH_STATE_DIR/audit.jsonl"
echo "fleet_copy_test: ok"
