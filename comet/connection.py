"""The lean client connection both transports share: an asyncio Protocol over the loop's own transport.

A comet holds tens of thousands of idle connections, so one costs only what it must: this object (``__slots__``,
no timer, no coroutine, no read buffer while idle: the transport hands each read to ``data_received``) and the
event loop's transport. Deadlines live in the node's ``heartbeat.Deadlines`` wheel; everything the connections
of a node share (service, deadlines, limits) is one :class:`ClientContext`.

Writes take no future. While the transport's buffer is empty (the kernel took every byte so far),
``transport.write`` sends at once and nothing is counted. The transport's high-water mark is 0, so the write
that leaves bytes behind calls ``pause_writing``: from then on, until ``resume_writing`` says the buffer drained,
every write is counted with the byte offset at which it ends, and the writes whose end the transport has flushed
are dropped from the count. With ``max_queue`` writes unsent the next one closes the connection (the message
stays stored; the client fetches it by mid after reconnecting). The transport keeps bytes in write order, so
messages and replies cannot overtake each other. A TLS transport (asyncio's and uvloop's ``SSLProtocol``) never
resumes with a high-water mark of 0, so there it is 1: writes are counted once the TLS layer holds ciphertext it
could not hand on, i.e. once the socket's own transport is over its 64 KiB high-water mark.

Admission by source address (``thirdparty.rate_limit.AddressLimiter``: connections per address, new connections
per second per address) happens in ``connection_made``, before anything is read: a connection over a limit is
aborted at once, with no reply (docs/protocol.md, "Limits"). An admitted connection keeps a reference to its
address's slot and gives it back in ``connection_lost``. A read carrying more than ``limits.heartbeat_burst``
heartbeats closes the connection: each heartbeat is answered, so a flood of them would fill the write buffer; so
does a read carrying more than ``limits.max_acks_per_read`` acks (each costs a trace record). A connection keeps
one number for acks (``since_mid``), never a list of what it was sent.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, ClassVar, cast

from comet.channel import next_conn_id
from comet.heartbeat import Deadlines
from comet.message_codec import EncodedMessage
from comet.protocol import REPLY_OK, Subscribe, SubscribeLimits
from comet.service import CometService
from comet.stat import (
    CLOSE_ACK_FLOOD, CLOSE_ADDR_CONNS, CLOSE_ADDR_RATE, CLOSE_CLIENT, CLOSE_FIRST_PACKET, CLOSE_HEARTBEAT,
    CLOSE_HEARTBEAT_FLOOD, CLOSE_OVERFLOW,
)
from thirdparty.rate_limit import AddressLimiter, AddressSlot, Refused

log = logging.getLogger(__name__)

REFUSAL_REASONS = {Refused.CONNS: CLOSE_ADDR_CONNS, Refused.RATE: CLOSE_ADDR_RATE}
DEFAULT_HEARTBEAT_BURST = 16
DEFAULT_MAX_ACKS_PER_READ = 256


def peer_host(address: Any) -> str:
    """The host part of a socket address ("" when it has none, e.g. a Unix socket)."""
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        return address[0]
    return ""


def peer_name(address: Any) -> str:
    """``host:port`` of a socket address (for logs)."""
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class ClientContext:
    """What every client connection of a node shares: one object per node, referenced by each connection."""

    __slots__ = ("service", "deadlines", "limits", "max_queue", "max_ws_frame", "sessions", "addresses",
                 "heartbeat_burst", "max_acks_per_read")

    def __init__(self, service: CometService, deadlines: Deadlines[Any], limits: SubscribeLimits, *,
                 max_queue: int, max_ws_frame: int, addresses: AddressLimiter | None = None,
                 heartbeat_burst: int = DEFAULT_HEARTBEAT_BURST,
                 max_acks_per_read: int = DEFAULT_MAX_ACKS_PER_READ) -> None:
        self.service = service
        self.deadlines = deadlines
        self.limits = limits
        self.max_queue = max_queue
        self.max_ws_frame = max_ws_frame
        self.sessions: set[ClientConnection] = set()  # every open connection, subscribed or not
        self.addresses = addresses if addresses is not None else AddressLimiter()  # default: no limit
        self.heartbeat_burst = heartbeat_burst
        self.max_acks_per_read = max_acks_per_read


class ClientConnection(asyncio.Protocol):
    """One client: its transport, key, wire form and heartbeat; subclasses speak the transport's protocol."""

    __slots__ = ("ctx", "transport", "conn_id", "key", "form", "subscribed", "heartbeat", "close_reason",
                 "since_mid", "_unsent", "_written", "_address")
    protocol: ClassVar[str] = "tcp"  # "tcp" or "ws", for counters
    transport: asyncio.Transport

    def __init__(self, ctx: ClientContext) -> None:
        self.ctx = ctx
        self.conn_id = next_conn_id()
        self.key = ""
        self.form = 0  # message_codec.FORM_*, set when subscribed
        self.subscribed = False
        self.heartbeat = 0
        self.close_reason: str | None = None
        self.since_mid = 0  # the key's last mid when it subscribed (set by the service): acks must be above it
        self._unsent: deque[int] | None = None  # end offsets of unsent writes; None while nothing is buffered
        self._written = 0  # bytes written since the buffer last became non-empty
        self._address: AddressSlot | None = None  # the source address's slot, once admitted

    @property
    def peer(self) -> str:
        """The client's address, looked up when a log line needs it."""
        try:
            return peer_name(self.transport.get_extra_info("peername"))
        except (AttributeError, OSError, RuntimeError):
            return "?"

    # -- asyncio.Protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        ctx = self.ctx
        if ctx.addresses.enabled:
            admitted = ctx.addresses.acquire(peer_host(transport.get_extra_info("peername")), ctx.deadlines.clock())
            if isinstance(admitted, Refused):
                self.close_reason = REFUSAL_REASONS[admitted]
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("conn=%d peer=%s: refused at connect (%s)", self.conn_id, self.peer, admitted.value)
                self.transport.abort()
                return
            self._address = admitted
        tls = transport.get_extra_info("sslcontext") is not None
        self.transport.set_write_buffer_limits(high=1 if tls else 0)  # pause_writing once a byte stays unsent
        ctx.sessions.add(self)
        ctx.deadlines.first_packet(self)

    def connection_lost(self, exc: Exception | None) -> None:
        ctx = self.ctx
        ctx.sessions.discard(self)
        ctx.deadlines.cancel(self)
        if self._address is not None:
            ctx.addresses.release(self._address, ctx.deadlines.clock())
            self._address = None
        if self.close_reason is None:
            self.close_reason = CLOSE_CLIENT
        ctx.service.connection_closed(self, self.close_reason, self.subscribed)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("key=%s conn=%d: closed (%s)", self.key, self.conn_id, self.close_reason)

    def pause_writing(self) -> None:
        self._written = self.transport.get_write_buffer_size()  # all of it is the write that just ran
        self._unsent = deque((self._written,))

    def resume_writing(self) -> None:
        self._unsent = None

    # -- writing -------------------------------------------------------------------------------------------

    def send(self, message: EncodedMessage) -> bool:
        """Write a pushed message; False when the connection is closing or its queue overflowed."""
        if self._unsent is None and self.close_reason is None:
            self.transport.write(message.wire(self.form))
            return True
        return self.write(message.wire(self.form))

    def write(self, data: bytes) -> bool:
        """Write bytes, counting them while the transport has a backlog (see the module docstring)."""
        if self.close_reason is not None:
            return False
        unsent = self._unsent
        if unsent is None:
            self.transport.write(data)
            return True
        flushed = self._written - self.transport.get_write_buffer_size()
        while unsent and unsent[0] <= flushed:
            unsent.popleft()
        if len(unsent) >= self.ctx.max_queue:
            log.warning("key=%s conn=%d peer=%s: %d writes queued, closing the slow connection",
                        self.key, self.conn_id, self.peer, len(unsent))
            self.close(CLOSE_OVERFLOW)
            return False
        self.transport.write(data)
        self._written += len(data)
        unsent.append(self._written)
        return True

    # -- subscribing and closing ---------------------------------------------------------------------------

    def admit(self, subscribe: Subscribe, form: int, prefix: bytes = b"") -> bool:
        """Have the service register the subscription; write ``prefix`` and the reply. True when subscribed."""
        self.key = subscribe.key
        self.form = form
        reply, why = self.ctx.service.subscribe(self, subscribe)
        if reply != REPLY_OK:
            log.info("key=%s conn=%d peer=%s: subscribe refused with %s: %s", self.key, self.conn_id, self.peer,
                     reply.strip().decode(), why)
            self.refuse(reply, prefix)
            return False
        self.subscribed = True
        self.heartbeat = subscribe.heartbeat
        self.write(prefix + self.reply_bytes(REPLY_OK))  # before any await: no message can overtake the +h
        self.ctx.deadlines.heartbeat(self, subscribe.heartbeat)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("key=%s conn=%d peer=%s: subscribed, heartbeat=%d version=%r", self.key, self.conn_id,
                      self.peer, subscribe.heartbeat, subscribe.version)
        return True

    def heartbeats(self, count: int) -> None:
        """``count`` heartbeats arrived: answer each, move the deadline (more than the burst: close)."""
        ctx = self.ctx
        if count > ctx.heartbeat_burst:
            log.info("key=%s conn=%d peer=%s: %d heartbeats in one read, more than %d, closing", self.key,
                     self.conn_id, self.peer, count, ctx.heartbeat_burst)
            self.close(CLOSE_HEARTBEAT_FLOOD)
            return
        self.write(self.reply_bytes(REPLY_OK) * count)
        ctx.deadlines.heartbeat(self, self.heartbeat)
        ctx.service.stats.heartbeats += count

    def acknowledged(self, mids: list[int]) -> None:
        """Acks that arrived in one read (more than ``max_acks_per_read``: close); see CometService.acked."""
        ctx = self.ctx
        if len(mids) > ctx.max_acks_per_read:
            log.info("key=%s conn=%d peer=%s: %d acks in one read, more than %d, closing", self.key, self.conn_id,
                     self.peer, len(mids), ctx.max_acks_per_read)
            self.close(CLOSE_ACK_FLOOD)
            return
        ctx.service.acked(self, mids)

    def on_timeout(self) -> None:
        """The deadline passed: no subscribe or heartbeat in time, or the peer did not finish closing."""
        if self.close_reason is not None:
            self.abort()
        else:
            self.close(CLOSE_HEARTBEAT if self.subscribed else CLOSE_FIRST_PACKET)

    def close(self, reason: str) -> None:
        """Start closing (once); the connection leaves the table in ``connection_lost``."""
        if self.close_reason is None:
            self.close_reason = reason
            self.shut(reason)

    def abort(self) -> None:
        """Drop the connection now, without flushing or a closing handshake."""
        self.transport.abort()

    def reply_bytes(self, reply: bytes) -> bytes:
        """A subscribe or heartbeat reply as the transport carries it."""
        raise NotImplementedError

    def refuse(self, reply: bytes, prefix: bytes = b"") -> None:
        """Send a ``-x`` reply (after ``prefix``), then close."""
        raise NotImplementedError

    def shut(self, reason: str) -> None:
        """Close the transport the way ``reason`` (already recorded) calls for."""
        raise NotImplementedError
