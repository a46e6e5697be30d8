"""Helpers shared by the message role's tests: an injectable clock, ``make_store`` (a message store of each back end,
parametrized), ``start_node`` (a started MessageNode on a free port with a MessageClient to it), a bare RPC client
for what MessageClient would not send, and the checks of bad arguments.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import pytest

from message.client import MessageClient
from message.config import load
from message.node import MessageNode
from message.redis_storage import RedisStorage
from message.sqlite_storage import SqliteStorage
from message.storage import InvalidArgument, Limits, Storage
from tests.helpers import free_port
from thirdparty.rpc_client import RemoteError, RpcClient
from thirdparty.rpc_codec import ERR_PARAM

START_NS = 1_700_000_000_000_000_000
HOUR = 3600


class Clock:
    """An injectable ``now_ns`` that only moves when told to."""

    def __init__(self, ns: int = START_NS) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns

    def step(self, seconds: float) -> None:
        self.ns += int(seconds * 1_000_000_000)


@pytest.fixture(params=["redis", "sqlite"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await make_store(limits=..., clock=..., path=...)`` opens a store of the parametrized back end (SQLite in
    ``path``, by default ``tmp_path/data/messages.db``); all are closed after the test."""
    backend = request.param
    url: str = request.getfixturevalue("redis_url") if backend == "redis" else ""
    opened: list[Storage] = []

    async def make(limits: Limits = Limits(), clock: Clock | None = None, path: str | Path | None = None) -> Any:
        clock = clock or Clock()
        store: Storage
        if backend == "redis":
            store = RedisStorage({"r1": url}, limits=limits, now_ns=clock)
        else:
            store = await SqliteStorage.open(str(path or tmp_path / "data" / "messages.db"), limits=limits,
                                             now_ns=clock)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def start_node() -> AsyncIterator[Callable[..., Awaitable[tuple[MessageNode, MessageClient]]]]:
    """``await start_node(storage_overrides, now_ns=..., metrics=..., **rpc)`` -> (node, client): a started node
    (``metrics``: its ``[bind] metrics`` listener, none when not given) and a client to it; all are stopped after
    the test."""
    started: list[tuple[MessageNode, MessageClient]] = []

    async def start(storage: dict[str, Any], *, now_ns: Callable[[], int] = time.time_ns, metrics: str | None = None,
                    **rpc: Any) -> tuple[MessageNode, MessageClient]:
        overrides: dict[str, Any] = {"rpc": {"bind": f"127.0.0.1:{free_port()}", **rpc}, "storage": storage}
        if metrics is not None:
            overrides["bind"] = {"metrics": metrics}
        config = load(None, overrides=overrides)
        node = MessageNode(config, now_ns=now_ns)
        await node.start()
        client = MessageClient(config.rpc.bind, timeout=2.0)
        started.append((node, client))
        return node, client

    yield start
    for node, client in started:
        await client.close()
        await node.stop()


async def assert_rejected_before_io(tmp_path: Path, method: str, args: Sequence[Any]) -> None:
    """``method(*args)`` raises InvalidArgument (a ValueError) on stores that cannot do I/O: a Redis on a closed
    port and a closed SQLite file."""
    dead_redis = RedisStorage({"dead": f"redis://127.0.0.1:{free_port()}/0"})
    closed_sqlite = await SqliteStorage.open(str(tmp_path / "m.db"))
    await closed_sqlite.close()
    try:
        for store in (dead_redis, closed_sqlite):
            with pytest.raises(InvalidArgument) as info:
                await getattr(store, method)(*args)
            assert isinstance(info.value, ValueError)
    finally:
        await dead_redis.close()


@contextlib.asynccontextmanager
async def raw_rpc(address: str) -> AsyncIterator[RpcClient]:
    """A bare RpcClient to a node's RPC ``address`` (it sends what MessageClient would not); closed on the way out."""
    raw = RpcClient(address, timeout=2.0)
    try:
        yield raw
    finally:
        await raw.close()


async def assert_param_error(raw: RpcClient, method: str, params: Sequence[Any]) -> None:
    """``MessageRPC.<method>(*params)`` gets the 65534 error reply."""
    with pytest.raises(RemoteError) as info:
        await raw.call(f"MessageRPC.{method}", *params)
    assert info.value.code == ERR_PARAM
