"""The bare tornado baseline: the same socket work as pushcluster with none of its logic.

``python -m benchmarks.baseline --tcp P --ws P --http P`` serves, on one event loop (uvloop, as the roles):

* TCP: a stock ``TCPServer``/``IOStream`` that reads the subscribe command, takes the key from it, answers
  ``+h\\r\\n``, holds the connection and answers each ``h`` with ``+h\\r\\n``;
* WebSocket ``/sub?key=K``: a stock ``WebSocketHandler`` doing the same with text frames;
* HTTP: ``GET /fixed?n=BYTES`` returns a fixed JSON envelope of about that size; ``POST /push?key=K`` writes the
  body, wrapped as pushcluster's message JSON, to K's connections (a bulk string on TCP, a text frame on
  WebSocket) and answers like ``/push/private``; ``POST /mpush`` does that for the keys of an mprivate document.

No storage, no RPC, no limits, no validation: the ratio pushcluster / baseline is the price of its logic.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import defaultdict
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpserver import TCPServer
from tornado.websocket import WebSocketHandler

from thirdparty.runtime import loop_factory

REPLY_OK = b"+h\r\n"
SUBSCRIBERS: defaultdict[str, set[Any]] = defaultdict(set)  # key -> IOStreams and WebSocketHandlers
_mid = 0


class BareTcpServer(TCPServer):
    async def handle_stream(self, stream: IOStream, address: Any) -> None:
        stream.set_nodelay(True)
        key = ""
        try:
            command = await stream.read_bytes(4096, partial=True)
            parts = command.split(b"\r\n")  # *5, $3, sub, $len, key, ...
            key = parts[4].decode() if len(parts) > 4 else ""
            SUBSCRIBERS[key].add(stream)
            stream.write(REPLY_OK)
            while True:
                data = await stream.read_bytes(4096, partial=True)
                stream.write(REPLY_OK * data.count(b"h"))
        except StreamClosedError:
            pass
        finally:
            SUBSCRIBERS[key].discard(stream)


class BareWebSocket(WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        self.key = self.get_query_argument("key", "")
        SUBSCRIBERS[self.key].add(self)
        self.write_message(REPLY_OK)

    def on_message(self, message: str | bytes) -> None:
        self.write_message(REPLY_OK)

    def on_close(self) -> None:
        SUBSCRIBERS[self.key].discard(self)


def deliver(key: str, msg: bytes) -> tuple[int, int]:
    """Write one message to every connection of ``key``; return (mid, connections written)."""
    global _mid
    _mid += 1
    payload = b'{"msg":%b,"mid":%d,"gid":0}' % (msg, _mid)
    frame = b"$%d\r\n%b\r\n" % (len(payload), payload)
    written = 0
    for conn in list(SUBSCRIBERS.get(key, ())):
        try:
            if isinstance(conn, IOStream):
                conn.write(frame)
            else:
                conn.write_message(payload)
            written += 1
        except (StreamClosedError, tornado.websocket.WebSocketClosedError):
            pass
    return _mid, written


class FixedHandler(tornado.web.RequestHandler):
    cache: dict[int, bytes] = {}

    def get(self) -> None:
        size = int(self.get_query_argument("n", "64"))
        if size not in self.cache:
            pad = max(0, size - 40)
            self.cache[size] = b'{"ret":0,"msg":"ok","data":{"pad":"%b"}}' % (b"x" * pad)
        self.set_header("Content-Type", "application/json;charset=utf-8")
        self.finish(self.cache[size])


class PushHandler(tornado.web.RequestHandler):
    def post(self) -> None:
        mid, online = deliver(self.get_query_argument("key"), self.request.body)
        self.set_header("Content-Type", "application/json;charset=utf-8")
        self.finish(b'{"ret":0,"msg":"ok","data":{"mid":%d,"online":%d}}' % (mid, online))


class MultiPushHandler(tornado.web.RequestHandler):
    def post(self) -> None:
        doc = json.loads(self.request.body)
        msg = doc["m"].encode()
        for key in doc["k"].split(","):
            deliver(key, msg)
        self.set_header("Content-Type", "application/json;charset=utf-8")
        self.finish(b'{"ret":0,"msg":"ok","data":{"fk":[]}}')


async def serve(tcp: int, ws: int, http: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tcp_server = BareTcpServer()
    tcp_server.listen(tcp, address="127.0.0.1")
    ws_server = HTTPServer(tornado.web.Application([(r"/sub", BareWebSocket)]))
    ws_server.listen(ws, address="127.0.0.1")
    http_server = HTTPServer(tornado.web.Application(
        [(r"/fixed", FixedHandler), (r"/push", PushHandler), (r"/mpush", MultiPushHandler)]))
    http_server.listen(http, address="127.0.0.1")
    await stop.wait()
    for server in (tcp_server, ws_server, http_server):
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tcp", type=int, required=True)
    parser.add_argument("--ws", type=int, required=True)
    parser.add_argument("--http", type=int, required=True)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:  # the roles' event loop (uvloop)
        runner.run(serve(args.tcp, args.ws, args.http))


if __name__ == "__main__":
    main()
