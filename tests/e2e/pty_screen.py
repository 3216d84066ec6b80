"""Runs a command on a pseudo-terminal and records what a terminal shows.

pty_screen.py OUT.json COLS ROWS CMD [ARGS...]

The command's stdout and stderr go to the pty (as in an interactive shell);
every byte it writes is fed to a pyte terminal emulator. The screen is sampled
every 0.1 s while the command runs. OUT.json gets {"exit": code, "frames":
[{"t": seconds, "lines": [...]}], "final": [...], "raw": text}: each frame the
rendered screen, one string per row (trailing blanks removed), "final" the
screen once the command ended, "raw" the bytes written (latin-1).
"""
import fcntl
import json
import os
import select
import struct
import subprocess
import sys
import termios
import time

import pyte


def main():
    out_path, cols, rows, cmd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)

    def rendered():
        return [line.rstrip() for line in screen.display]

    started = time.monotonic()
    frames, raw, next_sample = [], bytearray(), 0.0
    while True:
        ready, _, _ = select.select([master], [], [], 0.02)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the pty
                data = b""
            if not data:
                break
            raw += data
            stream.feed(data)
        now = time.monotonic() - started
        if now >= next_sample:
            frames.append({"t": round(now, 2), "lines": rendered()})
            next_sample = now + 0.1
    code = proc.wait()
    os.close(master)
    with open(out_path, "w") as f:
        json.dump({"exit": code, "frames": frames, "final": rendered(), "raw": raw.decode("latin-1")}, f)


if __name__ == "__main__":
    main()
