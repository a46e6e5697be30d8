"""An in-memory MessageAPI for the comet tests (the message role is not their subject).

Mids per key start at 1000 and grow by one per save, in call order, like the real node's
``max(now, last + 1)``. ``unavailable = True`` makes every call raise RpcUnavailable; keys in ``drop`` are left
out of ``save_privates`` results (a shard that failed); ``delay`` makes each save_private answer after 0, 1 or 2
times ``delay`` with its mid assigned on arrival, so that pushes the comet did not serialise would come back out
of order.
"""
from __future__ import annotations

import asyncio
from typing import Sequence

from message.client import FetchResult
from thirdparty.rpc_client import RpcUnavailable


class FakeMessage:
    def __init__(self) -> None:
        self.stored: dict[str, list[tuple[int, bytes]]] = {}
        self.last_mid: dict[str, int] = {}
        self.unavailable = False
        self.drop: set[str] = set()
        self.delay = 0.0
        self.calls: list[tuple[str, object]] = []
        self.closed = False
        self.public: list[tuple[int, bytes]] = []   # stored public messages (save_public), ascending
        self.last_public_mid = 999

    def _check(self) -> None:
        if self.unavailable:
            raise RpcUnavailable("fake message node: connection refused")

    def _save(self, key: str, msg: bytes, expire: int) -> int:
        mid = self.last_mid.get(key, 999) + 1
        self.last_mid[key] = mid
        if expire > 0:
            self.stored.setdefault(key, []).append((mid, msg))
        return mid

    async def save_private(self, key: str, msg: bytes, expire: int) -> int:
        self._check()
        self.calls.append(("save_private", key))
        mid = self._save(key, msg, expire)  # assigned on arrival, answered after a varying delay
        if self.delay:
            await asyncio.sleep(self.delay * (mid % 3))
        return mid

    async def save_privates(self, keys: Sequence[str], msg: bytes, expire: int) -> dict[str, int]:
        self._check()
        self.calls.append(("save_privates", list(keys)))
        if self.delay:
            await asyncio.sleep(self.delay)
        return {key: self._save(key, msg, expire) for key in keys if key not in self.drop}

    async def get_private(self, key: str, mid: int) -> FetchResult:
        self._check()
        return FetchResult([(m, msg) for m, msg in self.stored.get(key, []) if m > mid], False)

    async def del_private(self, key: str) -> int:
        self._check()
        return len(self.stored.pop(key, []))

    async def save_public(self, msg: bytes, expire: int) -> int:
        """Public mids: their own sequence (from 1000), stored in ``public`` only when expire > 0."""
        self._check()
        self.last_public_mid += 1
        if expire > 0:
            self.public.append((self.last_public_mid, msg))
        return self.last_public_mid

    async def get_public(self, mid: int) -> FetchResult:
        self._check()
        return FetchResult([(m, msg) for m, msg in self.public if m > mid], False)

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        self.closed = True
