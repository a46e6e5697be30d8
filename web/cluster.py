"""ClusterView: which comet node serves a key, its addresses and RPC client, and the message client.

The view is built from a list of :class:`comet.client.CometNodeInfo` (today the web config's static comet
list; later the ZooKeeper watcher calls :meth:`ClusterView.update` with the live list). A key maps to a
node *name* through the shared ketama ring (thirdparty.ring), so a standby that takes over a name keeps its
keys. Each node's CometClient is created on first use and kept across updates while the node's RPC address
does not change.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Iterable, Sequence

from comet.client import CometAPI, CometNodeInfo
from message.client import MessageAPI
from thirdparty.ring import MAX_WEIGHT, Ring

log = logging.getLogger(__name__)

CometClientFactory = Callable[[CometNodeInfo], CometAPI]


class CometNode:
    """One comet node as the web sees it: its published info and a lazily created RPC client."""

    __slots__ = ("info", "_factory", "_client")

    def __init__(self, info: CometNodeInfo, factory: CometClientFactory) -> None:
        self.info = info
        self._factory = factory
        self._client: CometAPI | None = None

    @property
    def name(self) -> str:
        return self.info.name

    def addresses(self, websocket: bool) -> list[str]:
        """The node's client addresses for WebSocket (True) or TCP (False), in published order."""
        return list(self.info.ws if websocket else self.info.tcp)

    def client(self) -> CometAPI | None:
        """The node's RPC client (created on first call), or None when the node publishes no RPC address."""
        if self._client is None and self.info.rpc:
            self._client = self._factory(self.info)
        return self._client

    async def close(self) -> None:
        """Close the RPC client if one was created."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def __repr__(self) -> str:
        return f"CometNode({self.name!r}, rpc={self.info.rpc!r})"


class ClusterView:
    """The comet ring plus the message client; safe to update while requests run (one event loop)."""

    def __init__(self, nodes: Iterable[CometNodeInfo], message: MessageAPI,
                 comet_client_factory: CometClientFactory) -> None:
        self._message = message
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
        if retired:
            await asyncio.gather(*(self._close_node(node) for node in retired))

    async def close(self) -> None:
        """Close every comet client and the message client."""
        nodes, self._nodes, self._ring = list(self._nodes.values()), {}, Ring({})
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
