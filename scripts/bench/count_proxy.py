"""A TCP proxy that counts what a client sends: rch's own SSH bytes, per worker.

count_proxy.py OUT_FILE TARGET_PORT...

Listens on one free 127.0.0.1 port per TARGET_PORT and forwards every
connection to 127.0.0.1:TARGET_PORT. OUT_FILE (rewritten atomically once
listening, and whenever a connection ends) holds one JSON object:
{"ports": {target: listening port}, "sent": {target: bytes the clients sent
to it}, "received": {target: bytes it answered}, "open": connections still
open}. Bytes are TCP payload (the SSH stream), not packets. It runs until killed.
"""
import json
import os
import socket
import sys
import threading

CHUNK = 65536
lock = threading.Lock()
state = {"ports": {}, "sent": {}, "received": {}, "open": 0}


def dump(path):
    with open(path + ".tmp", "w") as f:
        json.dump(state, f)
    os.rename(path + ".tmp", path)


def pipe(src, dst, target, key, done):
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
            with lock:
                state[key][target] += len(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    done()


def serve(client, target, out):
    server = socket.create_connection(("127.0.0.1", int(target)))
    left = [2]

    def done():
        with lock:
            left[0] -= 1
            if left[0] == 0:
                state["open"] -= 1
                client.close()
                server.close()
                dump(out)

    with lock:
        state["open"] += 1
    threading.Thread(target=pipe, args=(client, server, target, "sent", done), daemon=True).start()
    threading.Thread(target=pipe, args=(server, client, target, "received", done), daemon=True).start()


def listen(listener, target, out):
    while True:
        client, _ = listener.accept()
        serve(client, target, out)


def main():
    out, targets = sys.argv[1], sys.argv[2:]
    for target in targets:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        state["ports"][target] = listener.getsockname()[1]
        state["sent"][target] = state["received"][target] = 0
        threading.Thread(target=listen, args=(listener, target, out), daemon=True).start()
    with lock:
        dump(out)
    threading.Event().wait()


if __name__ == "__main__":
    main()
