#!/usr/bin/env python3
"""Static file server for the download tests: HTTPS (or plain HTTP), Range
requests, a redirect endpoint, a connection dropped halfway on demand, and a
log of every request with its Range header.

usage: https_server.py PORT_FILE DIR [--cert PEM --key PEM] [--log FILE] [--drop NAME]

Binds 127.0.0.1 on a free port and writes it to PORT_FILE once listening.
/redirect?to=URL answers 302 to URL. /chunked/NAME sends NAME chunked, with
no Content-Length and ignoring Range (a server that cannot resume). --drop NAME: the first request for
/NAME gets the full Content-Length but only half the bytes, then the
connection is closed. /slow?secs=N waits N seconds before answering;
/status?code=N answers N with a short text body. A POST (or PUT, …) to any
path answers 200 with JSON {method, path, headers, body} of the request
(and is logged with its body).
"""
import argparse
import http.server
import os
import re
import ssl
import sys
import json
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port_file")
    ap.add_argument("dir")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--log")
    ap.add_argument("--drop")
    args = ap.parse_args()
    lock = threading.Lock()
    dropped = set()

    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *a, **kw):
            super().__init__(*a, directory=args.dir, **kw)

        def log_message(self, fmt, *a):
            pass

        def answer(self, status, body, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if args.log:
                with lock, open(args.log, "a") as f:
                    f.write("%s %s %s\n" % (self.command, self.path, body.decode("utf-8", "replace")))
            echo = {"method": self.command, "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode("utf-8", "replace")}
            self.answer(200, json.dumps(echo).encode(), "application/json")

        do_PUT = do_POST

        def do_GET(self):
            if args.log:
                with lock, open(args.log, "a") as f:
                    f.write("%s %s range=%s\n" % (self.command, self.path, self.headers.get("Range", "-")))
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path == "/slow":
                time.sleep(float(query["secs"][0]))
            if url.path == "/status":
                self.answer(int(query["code"][0]), b"status %s\n" % query["code"][0].encode(), "text/plain")
                return
            if url.path == "/redirect":
                target = urllib.parse.parse_qs(url.query)["to"][0]
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if url.path == "/slow":
                self.answer(200, b"slow\n", "text/plain")
                return
            chunked = url.path.startswith("/chunked/")
            if chunked:
                url = url._replace(path=url.path[len("/chunked"):])
            path = self.translate_path(url.path)
            if not os.path.isfile(path):
                self.send_error(404, "File not found")
                return
            with open(path, "rb") as f:
                data = f.read()
            size = len(data)
            status, start, end = 200, 0, size
            if chunked:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, size, 65536):
                    chunk = data[i : i + 65536]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
                return
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)) + 1, size) if m.group(2) else size
                if start >= size or start >= end:
                    self.send_response(416)
                    self.send_header("Content-Range", "bytes */%d" % size)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            if status == 206:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, size))
            self.end_headers()
            body = data[start:end]
            name = url.path.lstrip("/")
            with lock:
                drop = name == args.drop and name not in dropped
                dropped.add(name)
            if drop:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
