"""In-memory fakes of CometAPI and MessageAPI, injected into a ClusterView for the web tests.

They follow the Protocols of comet.client / message.client; ``unreachable = True`` makes every call raise
RpcUnavailable (a node that cannot be reached), ``error = (code, text)`` makes it raise RemoteError.
"""
from __future__ import annotations

import asyncio
from typing import Any, Mapping, Sequence

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
        self.broadcasts: list[tuple[int, bytes]] = []   # push_public calls: (mid, msg)
        self.public_online = 0                          # what push_public answers
        self.public_gate: asyncio.Event | None = None   # push_public waits for it when set
        self.public_failures = 0    # the next N push_public calls fail as unreachable (counted down)
        self.public_calls = 0       # push_public calls, failed ones included

    async def push_private(self, key: str, msg: bytes, expire: int, meta: Mapping[str, Any] | None = None, *,
                           timeout: float | None = None) -> PushResult:
        self._check()
        self.pushes.append((key, msg, expire))
        self.next_mid += 1
        online = self.online.get(key, 0)
        outcome = ("written" if online else "offline") if meta is not None and meta.get("wait") else ""
        return PushResult(mid=self.next_mid, online=online, outcome=outcome)

    async def push_privates(self, keys: Sequence[str], msg: bytes, expire: int) -> list[str]:
        self._check()
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        self.multi_pushes.append((list(keys), msg, expire))
        return [key for key in keys if key in self.refuse]

    async def push_privates_counted(self, keys: Sequence[str], msg: bytes, expire: int,
                                    meta: Mapping[str, Any] | None = None, *,
                                    timeout: float | None = None) -> tuple[list[str], int, dict[str, str]]:
        """``push_privates`` answering as comet.client.CometClient does: (failed, online, outcomes)."""
        failed = await self.push_privates(keys, msg, expire)
        pushed = [key for key in keys if key not in failed]
        outcomes = ({key: "written" if self.online.get(key) else "offline" for key in pushed}
                    if meta is not None and meta.get("wait") else {})
        return failed, sum(self.online.get(key, 0) for key in pushed), outcomes

    async def push_public(self, mid: int, msg: bytes) -> int:
        """A broadcast: recorded in ``broadcasts``; answers ``public_online`` (waits for ``public_gate`` when set)."""
        self.public_calls += 1
        if self.public_failures > 0:
            self.public_failures -= 1
            raise RpcUnavailable("fake node: connection refused")
        self._check()
        self.broadcasts.append((mid, msg))
        if self.public_gate is not None:
            await self.public_gate.wait()
        return self.public_online

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
        self.public: list[tuple[int, bytes]] = []   # stored public (broadcast) messages, ascending
        self.public_trimmed = False
        self.next_public_mid = 5000
        self.tags: dict[str, set[str]] = {}      # the directory: key -> tags
        self.aliases: dict[str, str] = {}        # alias -> key
        self.tag_pages: list[tuple[str, int]] = []   # tag_keys calls: (after, count)

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

    async def save_public(self, msg: bytes, expire: int) -> int:
        """The next public mid (from ``next_public_mid``); stored in ``public`` only when expire > 0."""
        self._check()
        self.next_public_mid += 1
        if expire > 0:
            self.public.append((self.next_public_mid, msg))
        return self.next_public_mid

    async def get_public(self, mid: int) -> FetchResult:
        self._check()
        return FetchResult([(msg_id, msg) for msg_id, msg in self.public if msg_id > mid], self.public_trimmed)

    async def set_tags(self, key: str, tags: Sequence[str]) -> list[str]:
        self._check()
        if tags:
            self.tags[key] = set(tags)
        else:
            self.tags.pop(key, None)
        return sorted(tags)

    async def set_alias(self, key: str, alias: str) -> dict[str, Any]:
        self._check()
        replaced = next((name for name, owner in self.aliases.items() if owner == key), None)
        if replaced is not None:
            del self.aliases[replaced]
        moved_from = self.aliases.get(alias) if alias else None
        if alias:
            self.aliases[alias] = key
        return {"alias": alias or None, "moved_from": moved_from, "replaced": replaced}

    async def key_info(self, key: str) -> dict[str, Any]:
        self._check()
        alias = next((name for name, owner in self.aliases.items() if owner == key), None)
        return {"tags": sorted(self.tags.get(key, ())), "alias": alias}

    async def alias_key(self, alias: str) -> str | None:
        self._check()
        return self.aliases.get(alias)

    async def tag_keys(self, expr: Sequence[Sequence[str]], after: str, count: int) -> tuple[list[str], str | None]:
        """Keys matching the OR of AND-groups, ascending by UTF-8 bytes, > after; ``count`` at most."""
        self._check()
        self.tag_pages.append((after, count))
        matching = sorted((key for key, tags in self.tags.items() if any(set(group) <= tags for group in expr)
                           and key.encode() > after.encode()), key=str.encode)
        page = matching[:count]
        return page, page[-1] if len(matching) > count else None

    async def del_private(self, key: str) -> int:
        self._check()
        self.deleted.append(key)
        return len(self.stored.pop(key, []))


def node_info(name: str, weight: int = 1, rpc: list[str] | None = None, tcp: list[str] | None = None,
              ws: list[str] | None = None) -> CometNodeInfo:
    return CometNodeInfo(name=name, weight=weight, rpc=["127.0.0.1:1"] if rpc is None else rpc,
                         tcp=[] if tcp is None else tcp, ws=[] if ws is None else ws)
