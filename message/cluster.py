"""Message nodes on ZooKeeper: a message node's registration, and the directory comet and web nodes follow.

Layout: ``<root>/message/<token>_<10-digit sequence>``, ephemeral, holding :class:`message.client.MessageNodeInfo`
JSON ``{"rpc": "host:port", "weight": W}``. Every registered message node serves (there is no standby: message
nodes keep no state of their own, Redis does), so a node that dies only shrinks the pool; its znode vanishes
with its session. A node that lost its session registers again by itself (``thirdparty.zk.Registration``) and
keeps serving meanwhile: nothing it does depends on being registered.

:class:`MessageDirectory` keeps a :class:`message.client.MessagePool` equal to the registered nodes. Importing this
module loads kazoo but no message server code.
"""
from __future__ import annotations

import logging
from typing import Mapping

from message.client import MessageNodeInfo, MessagePool
from thirdparty.zk import Registration, Watch, ZkSession, by_sequence

log = logging.getLogger(__name__)

MESSAGE_DIR = "message"


async def register_message_node(session: ZkSession, info: MessageNodeInfo,
                                timeout: float | None = None) -> Registration:
    """Publish ``info`` under ``<root>/message/`` for as long as ``session`` lives (or until cancelled)."""
    return await session.register(session.path(MESSAGE_DIR), info.to_json(), timeout=timeout)


def parse_nodes(children: Mapping[str, bytes]) -> list[MessageNodeInfo]:
    """The valid entries of a ``<root>/message`` snapshot, oldest first, one per RPC address."""
    nodes: dict[str, MessageNodeInfo] = {}
    for child in by_sequence(children):
        try:
            info = MessageNodeInfo.from_json(children[child])
        except ValueError as exc:
            log.warning("znode %s/%s: %s; ignored", MESSAGE_DIR, child, exc)
            continue
        nodes.setdefault(info.rpc, info)
    return list(nodes.values())


class MessageDirectory:
    """Feeds ``pool`` with the message nodes registered in ZooKeeper, now and after every change."""

    def __init__(self, session: ZkSession, pool: MessagePool) -> None:
        self._session = session
        self._pool = pool
        self._watch: Watch | None = None

    async def start(self, timeout: float | None = None) -> None:
        """Start watching; wait (up to ``timeout``, default the session timeout) for the first node list."""
        session = self._session
        self._watch = session.watch_children(session.path(MESSAGE_DIR), self._changed)
        await self._watch.wait_synced(session.session_timeout if timeout is None else timeout)

    async def stop(self) -> None:
        if self._watch is not None:
            await self._watch.cancel()
            self._watch = None

    async def _changed(self, children: dict[str, bytes]) -> None:
        await self._pool.update(parse_nodes(children))
