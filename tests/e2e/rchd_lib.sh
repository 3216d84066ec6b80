# Talking to rchd from shell tests: one JSON request line, one reply line.

# rchd_request SOCKET JSON: prints the reply line; exit 1 if the daemon cannot
# be reached or closes without a reply.
rchd_request() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    sys.exit("cannot connect to %s: %s" % (sys.argv[1], e))
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        sys.exit("connection closed without a reply")
    buf += chunk
print(buf.decode().rstrip("\n"))
PY
}

# field JSON KEY: the value of KEY in a reply, as JSON (strings quoted).
field() { python3 -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1])[sys.argv[2]]))' "$1" "$2"; }
