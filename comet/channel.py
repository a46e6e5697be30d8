"""Channels: the client connections of each key, and the per-key lock that keeps a key's pushes in mid order.

No sockets here: transports (``tcp.py``, ``websocket.py``) implement the :class:`Connection` Protocol. A
:class:`Channel` exists only while its key has a connection or someone holds or waits for its lock, so a node
that pushed to a million offline keys keeps nothing for them. :meth:`ChannelTable.lock` /
:meth:`ChannelTable.lock_many` take the locks; several keys are always taken in sorted order, so two multi-key
pushes cannot deadlock.

``-c`` ("no channel") is the reply when a key already has ``max_conns_per_key`` connections: that is the only
case in which this node cannot give a subscriber a channel (gopush-cluster answered ``-c`` when it could not
get one, which in practice meant the same limit).
"""
from __future__ import annotations

import asyncio
import itertools
from contextlib import asynccontextmanager
from typing import AsyncIterator, Iterable, Protocol

from comet.message_codec import EncodedMessage

_conn_ids = itertools.count(1)


def next_conn_id() -> int:
    """A process-wide unique connection id (for logs and for identity in the table)."""
    return next(_conn_ids)


class Connection(Protocol):
    """A subscribed client connection, as the channel table and the push path see it."""

    @property
    def key(self) -> str: ...

    @property
    def conn_id(self) -> int: ...

    @property
    def protocol(self) -> str:
        """"tcp" or "ws" (for counters)."""
        ...

    since_mid: int  # the key's last mid when it subscribed: it never received that mid or an older one

    def send(self, message: EncodedMessage) -> bool:
        """Queue the message; False when it cannot be (queue overflowed, or the connection is closing)."""
        ...

    def close(self, reason: str) -> None:
        """Start closing the connection; the transport removes it from the table when it is gone."""
        ...


class ChannelFull(Exception):
    """The key already has the maximum number of connections (reply ``-c``)."""


class Channel:
    """One key: its connections (by conn_id, in subscribe order), its lock (made on first use), and the last mid
    written to it while the channel lived (what its connections can acknowledge)."""

    __slots__ = ("key", "connections", "_lock", "lock_users", "last_mid")

    def __init__(self, key: str) -> None:
        self.key = key
        self.connections: dict[int, Connection] = {}
        self._lock: asyncio.Lock | None = None
        self.lock_users = 0  # holders and waiters of the lock
        self.last_mid = 0

    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    @property
    def unused(self) -> bool:
        return not self.connections and self.lock_users == 0


class ChannelTable:
    """Every channel of a node, keyed by subscriber key."""

    def __init__(self, max_conns_per_key: int) -> None:
        if max_conns_per_key < 1:
            raise ValueError("max_conns_per_key must be >= 1")
        self.max_conns_per_key = max_conns_per_key
        self._channels: dict[str, Channel] = {}
        self._connection_count = 0

    @property
    def connection_count(self) -> int:
        return self._connection_count

    @property
    def channel_count(self) -> int:
        """Channels alive: keys with connections, plus keys whose lock is held right now."""
        return len(self._channels)

    def count(self, key: str) -> int:
        channel = self._channels.get(key)
        return len(channel.connections) if channel is not None else 0

    def add(self, conn: Connection) -> Channel:
        """Register a subscribed connection (its channel is returned); ChannelFull when its key has no room left."""
        channel = self._channels.get(conn.key)
        if channel is None:
            channel = self._channels[conn.key] = Channel(conn.key)
        if len(channel.connections) >= self.max_conns_per_key:
            raise ChannelFull(f"key has {len(channel.connections)} connections already")
        channel.connections[conn.conn_id] = conn
        self._connection_count += 1
        return channel

    def remove(self, conn: Connection) -> bool:
        """Forget a connection; False when it was not registered (already removed)."""
        channel = self._channels.get(conn.key)
        if channel is None or channel.connections.get(conn.conn_id) is not conn:
            return False
        del channel.connections[conn.conn_id]
        self._connection_count -= 1
        self._drop_if_unused(channel)
        return True

    def channel(self, key: str) -> Channel | None:
        """The key's channel, if it has one now (connections, or its lock held or awaited)."""
        return self._channels.get(key)

    def get(self, key: str) -> list[Connection]:
        """A snapshot of the key's connections (safe to use while sending closes some of them)."""
        channel = self._channels.get(key)
        return list(channel.connections.values()) if channel is not None else []

    def connections(self) -> list[Connection]:
        """Every registered connection of the node right now (a snapshot; comet/broadcast.py)."""
        return [conn for channel in self._channels.values() for conn in channel.connections.values()]

    def keys(self) -> list[str]:
        """The keys that have a channel right now (a snapshot)."""
        return list(self._channels)

    def close_key(self, key: str, reason: str) -> int:
        """Close and forget every connection of ``key``; return how many there were."""
        closed = self.get(key)
        for conn in closed:
            self.remove(conn)
            conn.close(reason)
        return len(closed)

    def close_all(self, reason: str) -> int:
        """Close and forget every connection of the node; return how many there were."""
        return sum(self.close_key(key, reason) for key in list(self._channels))

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock (the channel stays alive while it is held or awaited)."""
        channel = self._retain(key)
        try:
            async with channel.lock:
                yield
        finally:
            self._release(channel)

    @asynccontextmanager
    async def lock_many(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of every distinct key in ``keys``, taken in sorted order."""
        channels = [self._retain(key) for key in sorted(set(keys))]
        held: list[asyncio.Lock] = []
        try:
            for channel in channels:
                await channel.lock.acquire()
                held.append(channel.lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()
            for channel in channels:
                self._release(channel)

    def _retain(self, key: str) -> Channel:
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = Channel(key)
        channel.lock_users += 1
        return channel

    def _release(self, channel: Channel) -> None:
        channel.lock_users -= 1
        self._drop_if_unused(channel)

    def _drop_if_unused(self, channel: Channel) -> None:
        if channel.unused and self._channels.get(channel.key) is channel:
            del self._channels[channel.key]
