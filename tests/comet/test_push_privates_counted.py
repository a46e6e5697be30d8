"""CometClient.push_privates_counted over real MessagePack-RPC (a scripted CometRPC on a loopback RpcServer): the
whole reply (failed keys, connections written to, outcomes), and malformed replies."""
from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from comet.client import CometClient
from tests.helpers import free_port
from thirdparty.rpc_client import RemoteError
from thirdparty.rpc_server import RpcServer


class ScriptedComet:
    """CometRPC.PushPrivates answering ``reply``; records the params it got."""

    RPC_METHODS = ("PushPrivates",)

    def __init__(self) -> None:
        self.reply: Any = {"fk": [], "online": 0}
        self.calls: list[tuple[Any, ...]] = []

    async def PushPrivates(self, keys: Any, msg: Any, expire: Any, meta: Any = None) -> Any:
        self.calls.append((keys, msg, expire, meta))
        return self.reply


@pytest.fixture
async def comet() -> AsyncIterator[tuple[ScriptedComet, CometClient]]:
    service, server, port = ScriptedComet(), RpcServer(), free_port()
    server.register("CometRPC", service)
    server.listen(port, address="127.0.0.1")
    client = CometClient(f"127.0.0.1:{port}", timeout=2.0)
    try:
        yield service, client
    finally:
        await client.close()
        await server.close_all()


async def test_counted_push_returns_failed_online_and_outcomes(comet: tuple[ScriptedComet, CometClient]) -> None:
    service, client = comet
    service.reply = {"fk": ["b"], "online": 3}
    assert await client.push_privates_counted(["a", "b"], b"{}", 60, None, timeout=None) == (["b"], 3, {})
    service.reply = {"fk": [], "online": 1, "outcomes": {"a": "acked", "b": "offline"}}
    meta = {"wait": "acked", "timeout": 1.0}
    answer = await client.push_privates_counted(["a", "b"], b"1", 0, meta, timeout=3.0)
    assert answer == ([], 1, {"a": "acked", "b": "offline"})
    assert service.calls == [(["a", "b"], b"{}", 60, None), (["a", "b"], b"1", 0, meta)]


@pytest.mark.parametrize("reply", [
    None, [], {"online": 1}, {"fk": "a", "online": 1}, {"fk": [1], "online": 1}, {"fk": [], "online": -1},
    {"fk": [], "online": True}, {"fk": [], "online": "2"}, {"fk": [], "online": 1, "outcomes": []},
    {"fk": [], "online": 1, "outcomes": {"a": "lost"}},
])
async def test_a_malformed_reply_is_a_remote_error(comet: tuple[ScriptedComet, CometClient], reply: Any) -> None:
    service, client = comet
    service.reply = reply
    with pytest.raises(RemoteError) as info:
        await client.push_privates_counted(["a"], b"{}", 60, None)
    assert info.value.code == 65535 and "malformed CometRPC.PushPrivates reply" in info.value.message

