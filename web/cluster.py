"""ClusterView: which comet node serves a key, its addresses and RPC client, and the message client.

The view is built from a list of :class:`comet.client.CometNodeInfo` (today the web config's static comet
list; later the ZooKeeper watcher calls :meth:`ClusterView.update` with the live list). A key maps to a
node *name* through the shared ketama ring (thirdparty.ring), so a standby that takes over a name keeps its
keys. Each node's CometClient is created on first use and kept across updates while the node's RPC address
does not change.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable, Iterable, Sequence

from comet.client import CometAPI, CometNodeInfo
from message.client import MessageAPI
from thirdparty.ring import MAX_WEIGHT, Ring

log = logging.getLogger(__name__)

CometClientFactory = Callable[[CometNodeInfo], CometAPI]


class CometNode:
    """One comet node as the web sees it: its published info and a lazily created RPC client."""

    __slots__ = ("_info", "_factory", "_client", "_server_json")

    def __init__(self, info: CometNodeInfo, factory: CometClientFactory) -> None:
        self._info = info
        self._factory = factory
        self._client: CometAPI | None = None
        self._server_json: dict[tuple[bool, bool], bytes | None] = {}

    @property
    def info(self) -> CometNodeInfo:
        return self._info

    @info.setter
    def info(self, info: CometNodeInfo) -> None:
        self._info = info
        self._server_json = {}

    @property
    def name(self) -> str:
        return self._info.name

    def addresses(self, websocket: bool) -> list[str]:
        """The node's client addresses for WebSocket (True) or TCP (False), in published order."""
        return list(self._info.ws if websocket else self._info.tcp)

    def server_json(self, websocket: bool, every: bool) -> bytes | None:
        """``{"server":"<first address>"}`` (``every``: ``{"server":[<every address>]}``) as JSON bytes, made
        once per node and protocol; None when the node has no address for that protocol."""
        cache_key = (websocket, every)
        if cache_key in self._server_json:
            return self._server_json[cache_key]
        addresses = self.addresses(websocket)
        value: bytes | None = None
        if addresses:
            server = addresses if every else addresses[0]
            value = b'{"server":%b}' % json.dumps(server, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._server_json[cache_key] = value
        return value

    def client(self) -> CometAPI | None:
        """The node's RPC client (created on first call), or None when the node publishes no RPC address."""
        if self._client is None and self._info.rpc:
            self._client = self._factory(self._info)
        return self._client

    async def close(self) -> None:
        """Close the RPC client if one was created."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def __repr__(self) -> str:
        return f"CometNode({self.name!r}, rpc={self._info.rpc!r})"


class ClusterView:
    """The comet ring plus the message client; safe to update while requests run (one event loop)."""

    def __init__(self, nodes: Iterable[CometNodeInfo], message: MessageAPI,
                 comet_client_factory: CometClientFactory, *, retire_after: float = 0.0) -> None:
        self._message = message
        self._retire_after = retire_after  # seconds a retired node's client lives on for the calls it is running
        self._retiring: set[asyncio.Task[None]] = set()
        self._factory = comet_client_factory
        self._nodes: dict[str, CometNode] = {}
        self._ring = Ring({})
        self._install(list(nodes))

    @property
    def nodes(self) -> dict[str, CometNode]:
        """The current nodes by name (a copy)."""
        return dict(self._nodes)

    def message_client(self) -> MessageAPI:
        return self._message

    def pick(self, key: str) -> CometNode | None:
        """The comet node that serves ``key``, or None when the ring is empty."""
        name = self._ring.get(key)
        return self._nodes.get(name) if name is not None else None

    def group(self, keys: Sequence[str]) -> tuple[dict[CometNode, list[str]], list[str]]:
        """Keys grouped by their node (input order kept), plus the keys that no node serves."""
        groups: dict[CometNode, list[str]] = {}
        unrouted: list[str] = []
        for key in keys:
            node = self.pick(key)
            if node is None:
                unrouted.append(key)
            else:
                groups.setdefault(node, []).append(key)
        return groups, unrouted

    async def update(self, nodes: Sequence[CometNodeInfo]) -> None:
        """Replace the node list: rebuild the ring, keep the clients of unchanged nodes, close the others."""
        retired = self._install(list(nodes))
        if not retired:
            return
        if self._retire_after <= 0:
            await asyncio.gather(*(self._close_node(node) for node in retired))
            return
        task = asyncio.ensure_future(self._close_later(retired))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close_later(self, nodes: list[CometNode]) -> None:
        """Close retired nodes once every call they may be running has ended (or at once when close() cancels)."""
        try:
            await asyncio.sleep(self._retire_after)
        finally:
            await asyncio.gather(*(self._close_node(node) for node in nodes))

    async def close(self) -> None:
        """Close every comet client and the message client."""
        nodes, self._nodes, self._ring = list(self._nodes.values()), {}, Ring({})
        for task in list(self._retiring):
            task.cancel()   # its finally closes its nodes now
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await asyncio.gather(*(self._close_node(node) for node in nodes))
        await self._message.close()

    def _install(self, infos: list[CometNodeInfo]) -> list[CometNode]:
        """Swap in the new nodes and ring without awaiting (atomic for the loop); return retired nodes."""
        new_nodes: dict[str, CometNode] = {}
        for info in infos:
            if info.name in new_nodes:
                log.warning("comet %s: listed twice, keeping the first entry", info.name)
                continue
            if not info.name or not 1 <= info.weight <= MAX_WEIGHT:
                log.warning("comet %r: weight %d not in 1..%d, left out of the ring", info.name, info.weight,
                            MAX_WEIGHT)
                continue
            current = self._nodes.get(info.name)
            if current is not None and current.info.rpc == info.rpc:
                current.info = info  # same RPC endpoint: keep the connected client, refresh the addresses
                new_nodes[info.name] = current
            else:
                new_nodes[info.name] = CometNode(info, self._factory)
        retired = [node for name, node in self._nodes.items() if new_nodes.get(name) is not node]
        self._nodes = new_nodes
        self._ring = Ring({name: node.info.weight for name, node in new_nodes.items()})
        log.info("comet ring: %d node(s): %s", len(new_nodes), ", ".join(sorted(new_nodes)) or "none")
        return retired

    @staticmethod
    async def _close_node(node: CometNode) -> None:
        try:
            await node.close()
        except Exception:  # noqa: BLE001 - closing a retired client must not stop the others
            log.error("comet %s: closing its RPC client failed", node.name, exc_info=True)
