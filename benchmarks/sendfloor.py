"""The kernel's floor for a fan-out: how fast one process can ``send()`` one small frame to N loopback TCP sockets.

``python -m benchmarks.sendfloor N`` opens N connections to itself (the client ends held, unread, by a child
process, since 2 x N descriptors exceed one process's limit), then times a plain loop of ``socket.send`` over
the N accepted sockets a few times and prints the best rate as JSON. No event loop, no framing, nobody reading:
what is left is the syscall and the kernel's TCP work for both ends (on loopback the sender runs the receiver's
half too). A comet doing one write per connection cannot beat this figure from one process.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from typing import Any

from benchmarks.harness import die_with_parent, raise_nofile

FRAME = b'$68\r\n{"msg":{"t":1234567890123,"n":1},"mid":17005481234567890,"gid":0}\r\n'
HOLDER = """
import socket, sys
from benchmarks.harness import die_with_parent, raise_nofile
die_with_parent(); raise_nofile()
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for index in range(count):
    sock = socket.socket()
    sock.bind(("127.0.1.%d" % (2 + index % 200), 0))
    sock.connect(("127.0.0.1", port))
    held.append(sock)
print("ok", flush=True)
sys.stdin.read()
"""


def measure(count: int, repeats: int = 5) -> dict[str, Any]:
    raise_nofile()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(port), str(count)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, preexec_fn=die_with_parent)
    try:
        accepted = [listener.accept()[0] for _ in range(count)]
        if holder.stdout is None or holder.stdout.readline().strip() != b"ok":
            raise RuntimeError("the socket holder did not connect every socket")
        for sock in accepted:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for sock in accepted:
                sock.send(FRAME)
            rates.append(count / (time.perf_counter() - start))
            time.sleep(0.2)
        for sock in accepted:
            sock.close()
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(10)
        listener.close()
    return {"sends_per_s": max(rates), "us_per_send": 1e6 / max(rates), "rates": rates}


if __name__ == "__main__":
    die_with_parent()
    print(json.dumps(measure(int(sys.argv[1]))))
