"""In-memory fakes of CometAPI and MessageAPI, injected into a ClusterView for the web tests.

They follow the Protocols of comet.client / message.client; ``unreachable = True`` makes every call raise
RpcUnavailable (a node that cannot be reached), ``error = (code, text)`` makes it raise RemoteError.
"""
from __future__ import annotations

import asyncio
from typing import Any, Sequence

from comet.client import CometNodeInfo, PushResult
from message.client import FetchResult
from thirdparty.rpc_client import RemoteError, RpcUnavailable


class _FakeNode:
    def __init__(self) -> None:
        self.unreachable = False
        self.error: tuple[int, str] | None = None
        self.closed = False

    def _check(self) -> None:
        if self.unreachable:
            raise RpcUnavailable("fake node: connection refused")
        if self.error is not None:
            raise RemoteError(*self.error)

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        self.closed = True


class FakeComet(_FakeNode):
    """A comet node: records pushes and closes; ``online[key]`` connections per key."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.pushes: list[tuple[str, bytes, int]] = []
        self.multi_pushes: list[tuple[list[str], bytes, int]] = []
        self.closed_keys: list[str] = []
        self.online: dict[str, int] = {}
        self.refuse: set[str] = set()  # keys push_privates reports as failed
        self.next_mid = 1000
        self.started = asyncio.Event()            # set when push_privates is entered
        self.gate: asyncio.Event | None = None    # push_privates waits for it when set

    async def push_private(self, key: str, msg: bytes, expire: int) -> PushResult:
        self._check()
        self.pushes.append((key, msg, expire))
        self.next_mid += 1
        return PushResult(mid=self.next_mid, online=self.online.get(key, 0))

    async def push_privates(self, keys: Sequence[str], msg: bytes, expire: int) -> list[str]:
        self._check()
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        self.multi_pushes.append((list(keys), msg, expire))
        return [key for key in keys if key in self.refuse]

    async def close_key(self, key: str) -> int:
        self._check()
        self.closed_keys.append(key)
        return self.online.pop(key, 0)

    async def stat(self) -> dict[str, Any]:
        self._check()
        return {"pushes": len(self.pushes)}


class FakeMessage(_FakeNode):
    """A message node: ``stored[key]`` = [(mid, msg), ...] ascending; ``trimmed`` keys report a gap."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: dict[str, list[tuple[int, bytes]]] = {}
        self.trimmed: set[str] = set()
        self.deleted: list[str] = []

    async def save_private(self, key: str, msg: bytes, expire: int) -> int:
        self._check()
        msgs = self.stored.setdefault(key, [])
        mid = msgs[-1][0] + 1 if msgs else 1
        msgs.append((mid, msg))
        return mid

    async def save_privates(self, keys: Sequence[str], msg: bytes, expire: int) -> dict[str, int]:
        return {key: await self.save_private(key, msg, expire) for key in keys}

    async def get_private(self, key: str, mid: int) -> FetchResult:
        self._check()
        msgs = [(msg_id, msg) for msg_id, msg in self.stored.get(key, []) if msg_id > mid]
        return FetchResult(msgs, key in self.trimmed)

    async def del_private(self, key: str) -> int:
        self._check()
        self.deleted.append(key)
        return len(self.stored.pop(key, []))


def node_info(name: str, weight: int = 1, rpc: list[str] | None = None, tcp: list[str] | None = None,
              ws: list[str] | None = None) -> CometNodeInfo:
    return CometNodeInfo(name=name, weight=weight, rpc=["127.0.0.1:1"] if rpc is None else rpc,
                         tcp=[] if tcp is None else tcp, ws=[] if ws is None else ws)
