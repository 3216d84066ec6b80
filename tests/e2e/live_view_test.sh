#!/usr/bin/env bash
# The live view of `rch fleet deploy` on a terminal, as a terminal emulator
# (pyte) renders it: a line per worker in flight with its step and, during
# transfer, bytes sent, MB/s and ETA; an overall line (done/total, elapsed,
# ETA); finished workers one line each and no stale in-flight lines; no
# colour under NO_COLOR. w1 and w2 reach their sshd through a proxy that
# passes 6 MB/s, so their 24 MB transfer lasts seconds; w3 is down.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/deploy_lib.sh"

PY=python3
python3 -c 'import pyte' 2>/dev/null || PY=/usr/bin/python3
"$PY" -c 'import pyte' || fail "python3-pyte is missing: bash scripts/bootstrap.sh installs it"
HERE=$RCH_SOURCE_DIR/tests/e2e

big=$TMP/big-rch-wkr
cp "$RCH_WKR" "$big"
head -c 24000000 /dev/zero >>"$big" # an ELF runs with data appended
stage "$OWN" "$big"
write_config $'[deploy]\ncompress = "never"\n' # sent as it is: zeros would compress to almost nothing

for k in 1 2; do
  python3 "$HERE/slow_proxy.py" "$TMP/proxy$k" "$(<"$TB/w$k/port")" 6000000 &
  BACKGROUND+=("$!")
done
for k in 1 2; do
  wait_for "$TMP/proxy$k"
  port=$(<"$TMP/proxy$k") real=$(<"$TB/w$k/port")
  # The proxy's port shows the worker's own host key.
  grep "^\[127.0.0.1\]:$real " "$CFG/known_hosts" | sed "s/^\[127.0.0.1\]:$real /[127.0.0.1]:$port /" >>"$CFG/known_hosts"
  sed -i "s/^port = $real\$/port = $port/" "$CFG/workers.toml"
done
"${TESTBED[@]}" stop 3 "$TB" >/dev/null

NO_COLOR=1 "$PY" "$HERE/pty_screen.py" "$TMP/screen.json" 100 30 "$RCH" fleet deploy --no-toolchain

SCREEN=$TMP/screen.json "$PY" - <<'EOF' || fail "live view check failed (screen in $TMP kept in the log above)"
import json, os, re, sys
d = json.load(open(os.environ["SCREEN"]))
frames, final, raw = d["frames"], d["final"], d["raw"]

def dump(why):
    print("FAIL:", why, file=sys.stderr)
    for f in frames[-3:] + [{"t": "final", "lines": final}]:
        print("--- frame", f["t"], file=sys.stderr)
        print("\n".join(l for l in f["lines"] if l), file=sys.stderr)
    sys.exit(1)

assert d["exit"] == 1, dump("exit %s, want 1 (w3 is down)" % d["exit"])
inflight = re.compile(r"^  • (w\d) +(\w+) +(.*)$")
transfer = re.compile(r"^(\d+\.\d)/(\d+\.\d) MB  (\d+\.\d) MB/s  ETA (\d+s|\d+m\d\ds)$")
overall = re.compile(r"^  (\d)/4 done: (\d) completed, (\d) failed, (\d) skipped, (\d) rolled back; elapsed (\S+), ETA (\S+)$")
done_line = re.compile(r"^(✓ (w\d) completed in [\d.]+s|✗ (w\d) failed: .*)$")

sample, both, sent_seen, overall_seen, eta_seen = None, 0, {"w1": [], "w2": []}, 0, 0
for f in frames:
    lines = f["lines"]
    moving = {}
    for l in lines:
        m = inflight.match(l)
        if m and m.group(2) == "transfer":
            t = transfer.match(m.group(3))
            if t:
                sent, total, rate = float(t.group(1)), float(t.group(2)), float(t.group(3))
                if 0 < sent < total and total > 20 and 0.5 < rate < 50:
                    moving[m.group(1)] = sent
    if "w1" in moving and "w2" in moving:
        both += 1
        sample = sample or f
        for w in sent_seen: sent_seen[w].append(moving[w])
        if any(overall.match(l) for l in lines): overall_seen += 1
    for l in lines:
        o = overall.match(l)
        if o and o.group(1) != "0" and o.group(7) not in ("-", "0s"): eta_seen += 1
    # No stale line, ever: a finished worker is gone from the live block, and shows once.
    finished = [m.group(2) or m.group(3) for m in map(done_line.match, lines) if m]
    flying = [m.group(1) for m in map(inflight.match, lines) if m]
    for w in finished:
        if finished.count(w) > 1 or w in flying:
            dump("frame at %ss: %s finished but also %s" % (f["t"], w, "shown twice" if finished.count(w) > 1 else "in flight"))

if both < 3: dump("fewer than 3 frames show w1 and w2 transferring with bytes, MB/s and ETA (%d)" % both)
for w, seen in sent_seen.items():
    if len(set(seen)) < 2 or seen != sorted(seen): dump("%s: bytes sent do not advance: %s" % (w, seen))
if overall_seen < 3: dump("the overall line (done/total, elapsed, ETA) is missing during the transfer")
if eta_seen < 1: dump("no overall ETA once a worker finished")

text = [l for l in final if l]
if any(inflight.match(l) or overall.match(l) for l in text): dump("stale live lines left on the final screen")
for want in ("✓ w1 completed", "✓ w2 completed", "✓ w4 completed", "✗ w3 failed: "):
    n = sum(l.startswith(want) for l in text)
    if n != 1: dump("%r appears %d times on the final screen" % (want, n))
for want in ("  completed   w[1-2,4]", "  failed      w3",
             "Retry the workers that did not complete: rch fleet deploy --resume"):
    if want not in text: dump("summary line %r missing" % want)
if re.search(r"\x1b\[[0-9;]*m", raw): dump("colour codes written under NO_COLOR")
print("live view: %d frames with both transfers, w1 at %s MB; at %ss:" % (both, sent_seen["w1"][:6], sample["t"]))
print("\n".join(l for l in sample["lines"] if l))
EOF
installed 1 "$OWN" "$(sha_of "$big")"
installed 2 "$OWN" "$(sha_of "$big")"
echo "PASS"
