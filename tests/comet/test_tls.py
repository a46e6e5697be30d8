"""TLS on the comet's client listeners, with a certificate made at test time and real TLS clients: TLS over the TCP
protocol (an ssl-wrapped asyncio stream) and wss:// (the ``websockets`` package)."""
from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import time
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import connect

from comet.config import load
from comet.protocol import REPLY_OK
from tests.comet.clients import TIMEOUT, sub_args, sub_command
from tests.comet.tls_cert import CertFiles, make_cert
from tests.helpers import eventually
from thirdparty.confload import ConfigError
from thirdparty.sub_token import make_token
from thirdparty.tls import server_context

MSG = b'{"title":"over tls"}'


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> CertFiles:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def tls_node(start_node, cert):
    return await start_node(tls={"cert": cert.cert, "key": cert.key})


def host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


async def tls_subscribe(node, cert: CertFiles, key: str, *, rcvbuf: int | None = None, limit: int = 1 << 16):
    """A TLS connection to the TCP listener that subscribed ``key`` (new message form)."""
    host, port = host_port(node.addresses["tcp"][0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, ssl=cert.client_context(), server_hostname=host,
                                                       limit=limit)
    except BaseException:
        sock.close()
        raise
    writer.write(sub_command(*sub_args(key, 30, None, "1")))
    assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == REPLY_OK
    return reader, writer


async def closed_by_server(reader) -> bool:
    """True once the server closed the connection (EOF or reset) without sending anything."""
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    except ConnectionResetError:
        return True


async def close_quietly(writer) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, asyncio.TimeoutError):
        pass


async def test_subscribe_and_receive_over_tls_tcp(tls_node, cert):
    reader, writer = await tls_subscribe(tls_node, cert, "secure")
    try:
        assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        result = await tls_node.rpc.push_private("secure", MSG, 60)
        assert result.online == 1
        frame = b'{"msg":%b,"mid":%d,"gid":0}' % (MSG, result.mid)
        expected = b"$%d\r\n%b\r\n" % (len(frame), frame)
        assert await asyncio.wait_for(reader.readexactly(len(expected)), TIMEOUT) == expected
        writer.write(b"h")
        assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == REPLY_OK
        [conn] = tls_node.table.get("secure")
        assert conn._unsent is None  # everything flushed: an idle TLS connection keeps no write bookkeeping
    finally:
        await close_quietly(writer)
    await eventually(lambda: tls_node.table.connection_count == 0)


async def test_subscribe_with_a_token_and_receive_over_wss(start_node, cert):
    secret = "wss-test-secret-0123456789"
    node = await start_node(tls={"cert": cert.cert, "key": cert.key}, auth={"secrets": [secret]})
    token = make_token(secret.encode(), "browser", int(time.time()) + 600)
    query = urlencode({"key": "browser", "heartbeat": "30", "token": token, "ver": "1"})
    async with connect(f"wss://{node.addresses['ws'][0]}/sub?{query}", ssl=cert.client_context(), ping_interval=None,
                       compression=None, proxy=None, open_timeout=TIMEOUT, close_timeout=1) as ws:
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "+h\r\n"
        result = await node.rpc.push_private("browser", MSG, 60)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == '{"msg":%s,"mid":%d,"gid":0}' % (MSG.decode(), result.mid)
        await ws.send("h")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "+h\r\n"
    assert node.stats.tokens == {"ok": 1}


async def test_plain_client_on_a_tls_port_is_dropped_quietly(tls_node, cert, caplog):
    host, port = host_port(tls_node.addresses["tcp"][0])
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(sub_command(*sub_args("plain", 30, None, None)))
        try:
            received = await asyncio.wait_for(reader.read(), TIMEOUT)  # at most a TLS alert record
            assert REPLY_OK not in received
        except ConnectionResetError:
            pass
    finally:
        await close_quietly(writer)
    _, writer = await tls_subscribe(tls_node, cert, "after")  # the listener still serves TLS clients
    await close_quietly(writer)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_the_handshake_and_the_subscribe_are_both_bounded(start_node, cert):
    node = await start_node(tls={"cert": cert.cert, "key": cert.key}, limits={"first_packet_timeout": 0.2})
    host, port = host_port(node.addresses["tcp"][0])
    silent_reader, silent = await asyncio.open_connection(host, port)  # never starts the TLS handshake
    idle_reader, idle = await asyncio.open_connection(host, port, ssl=cert.client_context(), server_hostname=host)
    try:
        assert await closed_by_server(silent_reader)
        assert await closed_by_server(idle_reader)  # handshake done, no subscribe
    finally:
        await close_quietly(silent)
        await close_quietly(idle)
    await eventually(lambda: node.stats.closes["first packet timeout"] == 1)


async def test_slow_tls_reader_overflows_only_its_own_queue(start_node, cert):
    node = await start_node(tls={"cert": cert.cert, "key": cert.key}, limits={"max_queue": 4})
    _, slow = await tls_subscribe(node, cert, "fan", rcvbuf=2048, limit=1024)
    fast_reader, fast = await tls_subscribe(node, cert, "fan")
    big = b'{"blob":"' + b"x" * 60_000 + b'"}'
    try:
        for _ in range(400):
            result = await node.rpc.push_private("fan", big, 60)
            frame = b'{"msg":%b,"mid":%d,"gid":0}' % (big, result.mid)
            expected = b"$%d\r\n%b\r\n" % (len(frame), frame)
            assert await asyncio.wait_for(fast_reader.readexactly(len(expected)), TIMEOUT) == expected
            if node.stats.closes["queue overflow"]:
                break
        assert node.stats.closes["queue overflow"] == 1
        await eventually(lambda: node.table.count("fan") == 1)
        assert (await node.rpc.push_private("fan", MSG, 60)).online == 1
    finally:
        slow.transport.abort()
        await close_quietly(fast)


async def test_tls_on_websocket_only_keeps_tcp_plain(start_node, cert):
    node = await start_node(tls={"cert": cert.cert, "key": cert.key, "tcp": False})
    host, port = host_port(node.addresses["tcp"][0])
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(sub_command(*sub_args("plain", 30, None, None)))
        assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == REPLY_OK
    finally:
        await close_quietly(writer)
    query = urlencode({"key": "browser", "heartbeat": "30"})
    async with connect(f"wss://{node.addresses['ws'][0]}/sub?{query}", ssl=cert.client_context(), proxy=None,
                       ping_interval=None, open_timeout=TIMEOUT, close_timeout=1) as ws:
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "+h\r\n"


def test_tls_config_is_checked_at_load(tmp_path, cert):
    (tmp_path / "encrypted").mkdir()
    encrypted = make_cert(tmp_path / "encrypted", password=b"pw")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ({"cert": cert.cert}, "both cert and key"),
        ({"key": cert.key}, "both cert and key"),
        ({"cert": str(tmp_path / "missing.pem"), "key": cert.key}, "missing.pem'?: No such file"),
        ({"cert": str(garbage), "key": cert.key}, "cannot load"),
        ({"cert": encrypted.cert, "key": encrypted.key}, "encrypted"),
    ]
    for tls, needle in cases:
        with pytest.raises(ConfigError, match=needle):
            load(None, {"tls": tls})
    assert load(None, {"tls": {"cert": cert.cert, "key": cert.key}}).tls.enabled


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_the_openssl_fallback_makes_a_usable_certificate(tmp_path):
    files = make_cert(tmp_path, use_openssl=True)
    server_context(files.cert, files.key)
    files.client_context()
