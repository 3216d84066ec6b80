#!/usr/bin/env bash
# The audit log's truncation evidence, against the real sshd testbed: every
# entry carries seq; the head (seq, sha256 of the last line) is kept in
# audit.jsonl.head, in each history record and, with [audit] syslog, in a
# syslog datagram (here to a socket the test listens on); `rch fleet audit
# verify` names a cut-off tail, a torn last line and a rewritten last entry.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

AUDIT=$RCH_STATE_DIR/audit.jsonl
LOG=$TMP/syslog.sock
python3 - "$LOG" "$TMP/syslog.txt" <<'EOF_PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(65536) + b"\n")
EOF_PY
BACKGROUND+=($!)
wait_for "$LOG"
write_config "[audit]
syslog = true
syslog_socket = \"$LOG\"
"

echo "--- two deploys: seq, head file, history and syslog agree"
stage "$NEXT" "$RCH_WKR_NEXT"
deploy 0 --worker w1,w2
deploy 0 --worker w1,w2 --version "$NEXT"
expect_exit 0 "$RCH" fleet audit verify "$AUDIT"
n=$(wc -l <"$AUDIT")
contains "$OUT" "$AUDIT: $n entries, hash chain intact, head at entry $n matches"
TMP=$TMP py '
p = os.environ["RCH_STATE_DIR"] + "/audit.jsonl"
lines = open(p, "rb").read().splitlines()
assert [json.loads(l)["seq"] for l in lines] == list(range(1, len(lines) + 1))
head = json.load(open(p + ".head"))
assert head == {"seq": len(lines), "sha256": hashlib.sha256(lines[-1]).hexdigest()}, head
hist = load(os.environ["RCH_STATE_DIR"] + "/history.jsonl")
assert len(hist) == 2 and hist[-1]["audit_head"] == head, hist[-1]
first = hist[0]["audit_head"]
assert hashlib.sha256(lines[first["seq"] - 1]).hexdigest() == first["sha256"], first
sys_lines = open(os.environ["TMP"] + "/syslog.txt", "rb").read().decode().splitlines()
assert any(l.startswith("<14>rch-audit[") and l.endswith(": head of %s: seq=%d sha256=%s" % (p, head["seq"],
    head["sha256"])) for l in sys_lines), sys_lines[-3:]'

echo "--- the tail cut off (head -n -5) is named"
cp "$AUDIT" "$TMP/audit.full"
head -n -5 "$TMP/audit.full" >"$AUDIT"
expect_exit 1 "$RCH" fleet audit verify "$AUDIT"
contains "$ERR" "$AUDIT: its head ($AUDIT.head) says $n entries, the file has $((n - 5)): the last 5 were removed"

echo "--- a torn last line is named"
{ cat "$TMP/audit.full"; printf '{"prev_hash":"ab'; } >"$AUDIT"
expect_exit 1 "$RCH" fleet audit verify "$AUDIT"
contains "$ERR" "$AUDIT:$((n + 1)): torn last line (16 bytes without a newline)"

echo "--- the last entry rewritten is named"
{ head -n -1 "$TMP/audit.full"; tail -n 1 "$TMP/audit.full" | sed 's/DeploymentCompleted/DeploymentFailed/'; } >"$AUDIT"
expect_exit 1 "$RCH" fleet audit verify "$AUDIT"
contains "$ERR" "$AUDIT:$n: this entry does not match the head"
cp "$TMP/audit.full" "$AUDIT"
expect_exit 0 "$RCH" fleet audit verify "$AUDIT"
echo "PASS"
