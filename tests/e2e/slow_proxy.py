"""A TCP proxy that slows uploads: a throttled worker for the shell tests.

slow_proxy.py PORT_FILE TARGET_PORT BYTES_PER_S

Listens on 127.0.0.1 (a free port, written to PORT_FILE once listening) and
forwards every connection to 127.0.0.1:TARGET_PORT; bytes from the client to
the server pass at most BYTES_PER_S (per connection), the replies at full
speed. It runs until killed.
"""
import os
import socket
import sys
import threading
import time

CHUNK = 16384


def pipe(src, dst, rate):
    started, sent = time.monotonic(), 0
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
            sent += len(data)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(client, target_port, rate):
    server = socket.create_connection(("127.0.0.1", target_port))
    for a, b, r in ((client, server, rate), (server, client, 0)):
        threading.Thread(target=pipe, args=(a, b, r), daemon=True).start()


def main():
    port_file, target_port, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(listener.getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)
    while True:
        client, _ = listener.accept()
        serve(client, target_port, rate)


if __name__ == "__main__":
    main()
