"""Test clients of the comet's two transports behind one interface, so one suite runs against both.

``TcpSub`` speaks the raw TCP protocol over an asyncio stream; ``WsSub`` uses the ``websockets`` package.
``recv_frame()`` returns exactly what the transport carried for one server message (TCP: the whole
``$len\\r\\n...\\r\\n`` bulk string; WebSocket: the text frame's bytes) and ``wire(json)`` builds the expected
bytes, so tests compare byte for byte. ``slow_socket`` opens a raw socket with a tiny receive buffer that
subscribes and then never reads. ``client_frame`` builds a WebSocket frame as a client sends it (masked), or
a broken one.
"""
from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from comet.ws_frames import unmask

TIMEOUT = 3.0
MASK = b"\x37\xfa\x21\x3d"


def sub_command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args)


def sub_args(key: str, heartbeat: int | str, token: str | None, version: str | None) -> list[bytes]:
    args = [b"sub", key.encode(), str(heartbeat).encode()]
    if token is not None or version is not None:
        args.append((token or "").encode())
    if version is not None:
        args.append(version.encode())
    return args


def ws_query(key: str, heartbeat: int | str, token: str | None, version: str | None) -> str:
    params = {"key": key, "heartbeat": str(heartbeat)}
    if token is not None:
        params["token"] = token
    if version is not None:
        params["ver"] = version
    return "/sub?" + urlencode(params)


class TcpSub:
    proto = "tcp"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, node, key: str, heartbeat: int | str = 30, *, token: str | None = None,
                   version: str | None = None) -> tuple["TcpSub", bytes]:
        client = await cls.connect(node)
        client.writer.write(sub_command(*sub_args(key, heartbeat, token, version)))
        return client, await client.reply()

    @classmethod
    async def connect(cls, node) -> "TcpSub":
        host, port = node.addresses["tcp"][0].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    @staticmethod
    def wire(json_bytes: bytes) -> bytes:
        return b"$%d\r\n%b\r\n" % (len(json_bytes), json_bytes)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(4), TIMEOUT)

    async def recv_frame(self) -> bytes:
        header = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), TIMEOUT)
        assert header[:1] == b"$", header
        body = await asyncio.wait_for(self.reader.readexactly(int(header[1:-2]) + 2), TIMEOUT)
        return header + body

    async def heartbeat(self) -> None:
        await self.send_raw(b"h")

    async def send_bad_frame(self) -> None:
        await self.send_raw(b"x")

    async def closed_by_server(self, timeout: float = TIMEOUT) -> bytes:
        """Read until EOF; return what came before it."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


class WsSub:
    proto = "ws"

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, node, key: str, heartbeat: int | str = 30, *, token: str | None = None,
                   version: str | None = None) -> tuple["WsSub", bytes]:
        client = cls(await connect(f"ws://{node.addresses['ws'][0]}{ws_query(key, heartbeat, token, version)}",
                                   ping_interval=None, compression=None, proxy=None, open_timeout=TIMEOUT,
                                   close_timeout=1))
        return client, await client.reply()

    @staticmethod
    def wire(json_bytes: bytes) -> bytes:
        return json_bytes

    async def reply(self) -> bytes:
        return await self.recv_frame()

    async def recv_frame(self) -> bytes:
        data = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        assert isinstance(data, str), "the comet sends text frames"
        return data.encode()

    async def heartbeat(self) -> None:
        await self.ws.send("h")

    async def send_bad_frame(self) -> None:
        await self.ws.send("hello")

    async def closed_by_server(self, timeout: float = TIMEOUT) -> bytes:
        received = b""
        try:
            while True:
                data = await asyncio.wait_for(self.ws.recv(), timeout)
                received += data.encode() if isinstance(data, str) else data
        except ConnectionClosed:
            return received

    async def close(self) -> None:
        await self.ws.close()


TRANSPORTS = {"tcp": TcpSub, "ws": WsSub}


async def raw_connection(address: str, rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = address.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


def ws_handshake(address: str, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


async def slow_socket(node, proto: str, key: str, version: str | None = "1") -> asyncio.StreamWriter:
    """A subscribed raw connection with a tiny receive buffer whose owner never reads after the +h."""
    address = node.addresses[proto][0]
    reader, writer = await raw_connection(address, rcvbuf=2048)
    if proto == "tcp":
        writer.write(sub_command(*sub_args(key, 30, None, version)))
        assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"+h\r\n"
    else:
        writer.write(ws_handshake(address, ws_query(key, 30, None, version)))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert await asyncio.wait_for(reader.readexactly(6), TIMEOUT) == b"\x81\x04+h\r\n"
    return writer


def client_frame(opcode, payload, fin=True, mask=MASK, rsv=0, length=None):
    """A frame as a client sends it (masked unless mask is None)."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask is not None else 0
    if size < 126:
        header = bytes((first, mask_bit | size))
    elif size < 1 << 16:
        header = bytes((first, mask_bit | 126)) + struct.pack(">H", size)
    else:
        header = bytes((first, mask_bit | 127)) + struct.pack(">Q", size)
    if mask is None:
        return header + payload
    return header + mask + unmask(mask, payload)
