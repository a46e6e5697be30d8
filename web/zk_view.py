"""ZooKeeper as the source of a web node's ClusterView (cluster mode, ``[zookeeper] hosts`` set).

The web node follows ``<root>/comet`` as a tree: each name's active entry (``comet.cluster.active_entries``, the
same rule the comets apply to themselves) becomes a ``CometNodeInfo``, and the list goes to
:meth:`ClusterView.update` on every change, so ``/server/get`` and pushes follow the ring at once. It follows
``<root>/message`` into the :class:`message.client.MessagePool` the view hands out. A web node keeps no state of
its own: any number of them run side by side, each with its own session and watches, and agree because they read
the same znodes.

While its ZooKeeper connection is down a web node keeps routing with the last view it had (a comet that died in
the meantime fails fast with ret 65535); it re-reads everything once reconnected.
"""
from __future__ import annotations

import logging

from comet.cluster import COMET_DIR, active_entries
from message.client import MessagePool
from message.cluster import MessageDirectory
from thirdparty.zk import Watch, ZkSession
from thirdparty.zk_config import ZookeeperConfig
from web.cluster import ClusterView, CometClientFactory

log = logging.getLogger(__name__)


class ZkClusterSource:
    """Keeps ``view`` (comets) and ``pool`` (message nodes) equal to what is registered under the session's root."""

    def __init__(self, session: ZkSession, view: ClusterView, pool: MessagePool) -> None:
        self.session = session
        self.view = view
        self.pool = pool
        self._messages = MessageDirectory(session, pool)
        self._comets: Watch | None = None
        self._active: dict[str, str] = {}

    @classmethod
    async def open(cls, config: ZookeeperConfig, comet_client_factory: CometClientFactory, *,
                   message_timeout: float, retire_after: float = 0.0) -> ZkClusterSource:
        """Connect, build an empty view over a MessagePool, and fill both from ZooKeeper before returning."""
        session = ZkSession(config.hosts, session_timeout=config.session_timeout, root=config.root)
        await session.start()
        pool = MessagePool(timeout=message_timeout)
        source = cls(session, ClusterView([], pool, comet_client_factory, retire_after=retire_after), pool)
        try:
            await source.start()
        except BaseException:
            await session.stop()
            await source.view.close()
            raise
        return source

    async def start(self, timeout: float | None = None) -> None:
        """Watch both trees; wait (up to ``timeout``, default the session timeout) for the first view of each."""
        timeout = self.session.session_timeout if timeout is None else timeout
        self._comets = self.session.watch_tree(self.session.path(COMET_DIR), self._comets_changed)
        await self._comets.wait_synced(timeout)
        await self._messages.start(timeout)
        log.info("zookeeper=%s root=%s: following %d comet name(s), %d message node(s)", self.session.hosts,
                 self.session.root, len(self.view.nodes), len(self.pool.nodes))

    async def stop(self) -> None:
        """Stop watching and close the session (the view and its clients belong to the caller)."""
        if self._comets is not None:
            await self._comets.cancel()
            self._comets = None
        await self._messages.stop()
        await self.session.stop()

    async def _comets_changed(self, tree: dict[str, dict[str, bytes]]) -> None:
        active = active_entries(tree)
        for name, (child, _info) in active.items():
            if self._active.get(name) not in (None, child):
                log.warning("comet %s: active znode is now %s (was %s)", name, child, self._active[name])
        self._active = {name: child for name, (child, _info) in active.items()}
        await self.view.update([info for _child, info in active.values()])
