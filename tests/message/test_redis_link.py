"""RedisLink over real sockets: a real redis-server (pipelining, error replies, AUTH/SELECT, unix sockets, a
restart), and small asyncio servers that misbehave (silent, garbage) for the failures Redis itself will not show."""
from __future__ import annotations

import asyncio
import hashlib
import shutil
from typing import AsyncIterator, Awaitable, Callable

import pytest
import redis

from message.redis_link import RedisAddress, RedisLink, RedisUnavailable, ReplyError, pack
from tests.conftest import RedisServer
from tests.helpers import free_port

pytestmark = pytest.mark.redis

SCRIPT = "return redis.call('INCR', KEYS[1])"
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


@pytest.fixture
async def links() -> AsyncIterator[Callable[..., RedisLink]]:
    """``links(url, timeout=1.0)`` -> a RedisLink, closed after the test."""
    made: list[RedisLink] = []

    def make(url: str, timeout: float = 1.0) -> RedisLink:
        link = RedisLink("s1", url, timeout=timeout)
        made.append(link)
        return link

    yield make
    for link in made:
        await link.close()


@pytest.fixture
def own_redis() -> AsyncIterator[RedisServer]:
    """A redis-server of this test alone (it may be killed, restarted or given a password)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (bash .ci/run installs it)")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def serve(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
                ) -> tuple[asyncio.AbstractServer, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"


async def test_commands_are_pipelined_in_call_order_and_error_replies_are_values(redis_url, links) -> None:
    link = links(redis_url)
    replies = await asyncio.gather(*(link.execute(pack("INCR", "n")) for _ in range(50)),
                                   link.execute(pack("GET", "n")), link.execute(pack("NOSUCHCOMMAND")),
                                   link.execute(pack("EVAL", "return {1, redis.error_reply('bad'), 'x'}", 0)))
    assert replies[:50] == list(range(1, 51)) and replies[50] == b"50"
    assert isinstance(replies[51], ReplyError) and "unknown command" in str(replies[51])
    one, error, text = replies[52]
    assert one == 1 and isinstance(error, ReplyError) and str(error).endswith("bad") and text == b"x"
    assert await link.execute(pack("GET", "missing")) is None


async def test_registered_scripts_are_loaded_on_every_new_connection(own_redis, links) -> None:
    link = links(own_redis.url)
    link.register_script(SHA, SCRIPT)
    assert await link.execute(pack("EVALSHA", SHA, 1, "k")) == 1
    own_redis.kill()
    own_redis.start()  # an empty script cache: the new connection loads it before the first EVALSHA
    with pytest.raises(RedisUnavailable):  # the command sent on the old connection is lost with it
        await link.execute(pack("EVALSHA", SHA, 1, "k"))
    assert await link.execute(pack("EVALSHA", SHA, 1, "k")) == 1


async def test_a_dead_server_fails_fast_and_a_restarted_one_serves_at_once(own_redis, links) -> None:
    link = links(own_redis.url, timeout=5.0)
    assert await link.execute(pack("SET", "k", "v")) == b"OK"
    own_redis.kill()
    for _ in range(3):  # refused, every time: no waiting for the timeout
        with pytest.raises(RedisUnavailable):
            await asyncio.wait_for(link.execute(pack("GET", "k")), 2.0)
    own_redis.start()
    assert await link.execute(pack("PING")) == b"PONG"


async def test_nothing_listening_is_unavailable(links) -> None:
    link = links(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisUnavailable, match="cannot connect"):
        await link.execute(pack("PING"))


async def test_a_server_that_does_not_answer_fails_every_waiting_command_after_the_timeout(links) -> None:
    received = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        received.set()
        await reader.read(1000)  # until the client gives up
        writer.close()

    server, url = await serve(silent)
    try:
        link = links(url, timeout=0.2)
        calls = [asyncio.ensure_future(link.execute(pack("GET", f"k{n}"))) for n in range(3)]
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5.0)
        assert received.is_set()
        assert all(isinstance(r, RedisUnavailable) and "no reply within" in str(r) for r in results), results
    finally:
        server.close()
        await server.wait_closed()


async def test_garbage_from_the_server_drops_the_connection(links) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        writer.write(b"?what\r\n")
        await writer.drain()
        await reader.read(1000)
        writer.close()

    server, url = await serve(garbage)
    try:
        with pytest.raises(RedisUnavailable, match="protocol error"):
            await asyncio.wait_for(links(url).execute(pack("PING")), 5.0)
    finally:
        server.close()
        await server.wait_closed()


async def test_the_url_database_is_selected(redis_url, links) -> None:
    link = links(redis_url.rsplit("/", 1)[0] + "/3")
    assert await link.execute(pack("SET", "in3", "yes")) == b"OK"
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3")
    try:
        assert client.get("in3") == b"yes"
    finally:
        client.close()


async def test_password_and_wrong_password(own_redis, links) -> None:
    admin = redis.Redis.from_url(own_redis.url)
    try:
        admin.config_set("requirepass", "pw")
    finally:
        admin.close()
    base = f"127.0.0.1:{own_redis.port}/0"
    assert await links(f"redis://:pw@{base}").execute(pack("PING")) == b"PONG"
    with pytest.raises(RedisUnavailable, match="setting up the connection"):
        await links(f"redis://:wrong@{base}").execute(pack("PING"))


async def test_unix_socket(tmp_path, links) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (bash .ci/run installs it)")
    path = tmp_path / "r.sock"
    server = RedisServer(("--unixsocket", str(path), "--unixsocketperm", "700"))
    server.start()
    try:
        for _ in range(100):
            if path.exists():
                break
            await asyncio.sleep(0.02)
        assert await links(f"unix://{path}?db=2").execute(pack("PING")) == b"PONG"
    finally:
        server.stop()


async def test_close_fails_what_waits_and_what_comes(links) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        await reader.read(1000)
        writer.close()

    server, url = await serve(silent)
    try:
        link = links(url, timeout=30.0)
        waiting = asyncio.ensure_future(link.execute(pack("GET", "k")))
        await asyncio.sleep(0.05)
        await link.close()
        with pytest.raises(RedisUnavailable, match="closed"):
            await waiting
        with pytest.raises(RedisUnavailable, match="closed"):
            await link.execute(pack("PING"))
    finally:
        server.close()
        await server.wait_closed()


def test_urls() -> None:
    assert RedisAddress.from_url("redis://h:7/2") == RedisAddress(host="h", port=7, db=2)
    assert RedisAddress.from_url("redis://u:p@h") == RedisAddress(host="h", username="u", password="p")
    assert RedisAddress.from_url("unix:///tmp/r.sock?db=1") == RedisAddress(path="/tmp/r.sock", db=1)
    tls = RedisAddress.from_url("rediss://h:6380/0?ssl_cert_reqs=none").tls
    assert tls is not None and tls.check_hostname is False
