"""``MessagePool`` (``MessageAPI`` over many message nodes, weighted, failing over where safe) and
``MessageNodeInfo`` (what a message node publishes in ZooKeeper, the pool's node list).

Import these through ``message.client``, the role's public face (docs/architecture.md).
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Sequence, TypeVar

from message.node_client import MessageAPI, MessageClient
from message.storage import PUBLIC_LOG_KEY, FetchResult
from thirdparty.confload import ConfigError, parse_address
from thirdparty.ring import MAX_WEIGHT
from thirdparty.rpc_client import RpcTimeout, RpcUnavailable

__all__ = ["MessageNodeInfo", "MessagePool"]

log = logging.getLogger(__name__)
R = TypeVar("R")


@dataclass(frozen=True)
class MessageNodeInfo:
    """A message node as the cluster sees it: the znode JSON ``{"rpc": "host:port", "weight": W}``."""

    rpc: str
    weight: int = 1

    def to_json(self) -> bytes:
        return json.dumps({"rpc": self.rpc, "weight": self.weight}, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> MessageNodeInfo:
        """Parse and validate a published node; ValueError naming the problem."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"message node info is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("rpc"), str):
            raise ValueError("message node info must be an object with an \"rpc\": \"host:port\" string")
        try:
            parse_address(doc["rpc"])
        except ConfigError as exc:
            raise ValueError(f"message node info: {exc}") from None
        weight = doc.get("weight", 1)
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= MAX_WEIGHT:
            raise ValueError(f"message node {doc['rpc']}: weight must be an integer in 1..{MAX_WEIGHT}")
        return cls(rpc=doc["rpc"], weight=weight)


class _Member:
    __slots__ = ("client", "weight", "inflight", "retired")

    def __init__(self, client: MessageClient, weight: int) -> None:
        self.client = client
        self.weight = weight
        self.inflight = 0
        self.retired = False


class MessagePool(MessageAPI):
    """``MessageAPI`` over every registered message node: a weighted random node per call, failover where safe.

    A call that fails with ``RpcUnavailable`` goes to another node (each node at most once per call) when
    repeating it cannot do harm: reads (``get_private``, ``get_public``, ``ping``) and ``del_private`` always; saves
    (``save_private(s)``, ``save_public``) only when the request was never sent (the pool dials a node that has no
    open connection with a ``ping`` first, so "cannot connect" is known before the save is written). A save whose connection broke after it was written, and any
    ``RpcTimeout``, is not repeated: the node may have stored it, and a second node would store it again with a
    new mid; the caller gets the error. ``RemoteError`` is the node's answer and is never retried. With no node
    at all, calls raise ``RpcUnavailable``. ``update`` (the ZooKeeper watch) swaps the node list; a node that
    left is closed once its running calls have returned.
    """

    def __init__(self, nodes: Iterable[MessageNodeInfo] = (), *, timeout: float = 3.0,
                 client_factory: Callable[[str], MessageClient] | None = None,
                 rng: random.Random | None = None) -> None:
        self._timeout = timeout
        self._factory = client_factory or (lambda address: MessageClient(address, timeout=timeout))
        self._rng = rng or random.Random()
        self._members: dict[str, _Member] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._install(list(nodes))

    @property
    def nodes(self) -> dict[str, int]:
        """``{rpc address: weight}`` of the nodes in use."""
        return {address: member.weight for address, member in self._members.items()}

    async def update(self, nodes: Sequence[MessageNodeInfo]) -> None:
        for member in self._install(list(nodes)):
            member.retired = True
            if member.inflight == 0:
                await member.client.close()

    async def save_private(self, key: str, msg: bytes, expire: int) -> int:
        return await self._call("SavePrivate", key, lambda client: client.save_private(key, msg, expire), False)

    async def save_privates(self, keys: Sequence[str], msg: bytes, expire: int) -> dict[str, int]:
        return await self._call("SavePrivates", f"{len(keys)} keys",
                                lambda client: client.save_privates(keys, msg, expire), False)

    async def get_private(self, key: str, mid: int) -> FetchResult:
        return await self._call("GetPrivate", key, lambda client: client.get_private(key, mid), True)

    async def del_private(self, key: str) -> int:
        return await self._call("DelPrivate", key, lambda client: client.del_private(key), True)

    # --- public (broadcast) messages: a save is repeated only when never sent, a read always ---
    async def save_public(self, msg: bytes, expire: int) -> int:
        return await self._call("SavePublic", PUBLIC_LOG_KEY, lambda client: client.save_public(msg, expire), False)

    async def get_public(self, mid: int) -> FetchResult:
        return await self._call("GetPublic", PUBLIC_LOG_KEY, lambda client: client.get_public(mid), True)

    async def trace(self, records: list[Any]) -> int:
        return await self._call("Trace", "-", lambda client: client.trace(records), False)

    async def trace_query(self, method: str, *params: Any) -> dict[str, Any]:
        return await self._call(method, str(params[0]) if params else "-",
                                lambda client: client.trace_query(method, *params), True)

    # --- the tag/alias directory: idempotent, so always repeated on another node ---
    async def set_tags(self, key: str, tags: Sequence[str]) -> list[str]:
        return await self._call("SetTags", key, lambda client: client.set_tags(key, tags), True)

    async def set_alias(self, key: str, alias: str) -> dict[str, str | None]:
        return await self._call("SetAlias", key, lambda client: client.set_alias(key, alias), True)

    async def key_info(self, key: str) -> dict[str, Any]:
        return await self._call("KeyInfo", key, lambda client: client.key_info(key), True)

    async def alias_key(self, alias: str) -> str | None:
        return await self._call("AliasKey", "-", lambda client: client.alias_key(alias), True)

    async def tag_keys(self, expr: Sequence[Sequence[str]], after: str, count: int) -> tuple[list[str], str | None]:
        return await self._call("TagKeys", "-", lambda client: client.tag_keys(expr, after, count), True)

    async def ping(self) -> None:
        await self._call("Ping", "-", lambda client: client.ping(), True)

    async def close(self) -> None:
        members, self._members = list(self._members.values()), {}
        for member in members:
            await member.client.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _install(self, infos: list[MessageNodeInfo]) -> list[_Member]:
        """Swap in the node list (keeping the clients of nodes still listed); return the members that left."""
        members: dict[str, _Member] = {}
        for info in infos:
            if info.rpc in members:
                continue
            member = self._members.get(info.rpc) or _Member(self._factory(info.rpc), info.weight)
            member.weight = info.weight
            members[info.rpc] = member
        left = [member for address, member in self._members.items() if address not in members]
        self._members = members
        log.info("message pool: %d node(s): %s", len(members), ", ".join(sorted(members)) or "none")
        return left

    def _pick(self, tried: set[str]) -> _Member | None:
        candidates = [member for address, member in self._members.items() if address not in tried]
        if not candidates:
            return None
        return self._rng.choices(candidates, weights=[member.weight for member in candidates])[0]

    async def _call(self, method: str, subject: str, op: Callable[[MessageClient], Awaitable[R]],
                    repeatable: bool) -> R:
        tried: set[str] = set()
        failure: RpcUnavailable | None = None
        while (member := self._pick(tried)) is not None:
            client = member.client
            tried.add(client.address)
            member.inflight += 1
            sent = False
            try:
                if not repeatable and not client.connected:
                    await client.ping()  # dial first: a failure here means the save was never sent
                sent = True
                return await op(client)
            except RpcTimeout:
                raise
            except RpcUnavailable as exc:
                if sent and not repeatable:
                    raise
                failure = exc
                log.warning("rpc=%s key=%s method=%s: %s; trying another message node", client.address, subject,
                            method, exc)
            finally:
                member.inflight -= 1
                if member.retired and member.inflight == 0:
                    task = asyncio.get_running_loop().create_task(client.close())
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)
        raise failure or RpcUnavailable("no message node is registered")
