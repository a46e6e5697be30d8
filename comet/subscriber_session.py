"""One session of the subscriber SDK: a subscribed comet connection, from its catch-up fetch to its end.

:class:`Inbox` sits between the sessions and the application: it accepts each message once (``Cursor`` by
(gid, mid): a mid at or below the last accepted one of its gid is a duplicate and is dropped), queues it, and hands
the queue out in order; ``delivered`` is what the application got, ``accepted`` where the next catch-up starts.

:class:`Session` runs three tasks over one ``CometLink`` and ends by raising why it ended:

* the reader: heartbeat replies, and messages — held in a ``LiveBuffer`` while the catch-up runs, accepted into the
  inbox afterwards;
* the heartbeat: an ``h`` every ``heartbeat`` seconds; no reply within ``heartbeat_timeout`` ends the session
  (a half-open connection never reports itself);
* the catch-up: ``/1/msg/get`` from the last accepted mid (and, unless public messages are off, ``p`` from
  ``PublicWindow.fetch_from``), again from the last fetched mids until a reply has neither list, each page merged
  with the held live messages in mid order (``merge_page``); a ``trimmed`` / ``ptrimmed`` reply is a :class:`Gap`
  (gid 0 / 1).

Private messages the connection carried are acknowledged once the application took them (``subscriber_acks``).

With ``max_pending`` messages waiting for the application, a new live message ends the session instead of being
queued (it stays stored; the subscriber resumes once the application has taken half of them): memory stays bounded
and the heartbeat is never starved by a slow application.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from comet.subscriber_acks import Acker
from comet.subscriber_api import GID_PRIVATE, GID_PUBLIC, BadParameterError, Message, ServerError, parse_message
from comet.subscriber_http import WebApi
from comet.subscriber_link import CometLink, LinkClosed
from comet.subscriber_logic import Cursor, LiveBuffer, merge_page
from comet.subscriber_public import PublicWindow
from comet.subscriber_wire import Ack, Payload

log = logging.getLogger(__name__)

ACK_PAUSE = 0.02   # seconds between two writes of acks (subscriber_acks: a burst must not look like an ack flood)

NEW, CONNECTING, CATCHING_UP, LIVE, BACKOFF, CLOSED, FAILED = (
    "new", "connecting", "catching_up", "live", "backoff", "closed", "failed")


class SessionEnded(Exception):
    """A session ended on this side: heartbeat reply missing, too many messages waiting, unreadable message."""


class FetchRefused(Exception):
    """The web node answered the catch-up fetch with 65534: the key (or mid) is not acceptable."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages of ``key`` (gid) after ``after_mid`` were removed on the server (cap or expiry) before they could
    be fetched; ``next_mid`` is the first mid fetched after the gap (None when nothing followed)."""

    key: str
    gid: int
    after_mid: int
    next_mid: int | None


@dataclass
class SubscriberStats:
    """Counters of one subscriber (for logs, metrics and tests)."""

    lookups: int = 0             # /1/server/get calls
    sessions: int = 0            # subscribes accepted (+h)
    fetches: int = 0             # /1/msg/get calls
    live: int = 0                # messages received from a comet
    fetched: int = 0             # messages received from /1/msg/get
    duplicates: int = 0          # messages dropped because their mid was already accepted
    gaps: int = 0                # trimmed replies (private or public)
    acks: int = 0                # acknowledgements sent
    heartbeat_timeouts: int = 0  # sessions ended by a missing heartbeat reply
    overflows: int = 0           # sessions ended because max_pending messages were waiting
    refusals: Counter[str] = field(default_factory=Counter)   # -n, -c, -a, -p by letter


async def call_back(callback: Callable[[Any], Any], arg: Any) -> None:
    """Call an application callback, sync or async."""
    result = callback(arg)
    if inspect.isawaitable(result):
        await result


class Inbox:
    """Messages accepted once, waiting for the application in order. Public messages (gid 1) are accepted by a
    ``PublicWindow`` (late mids too); ``last_pmid`` None: public messages are never fetched."""

    def __init__(self, key: str, last_mid: int, max_pending: int, stats: SubscriberStats,
                 last_pmid: int | None = 0) -> None:
        self.key, self.max_pending, self.stats = key, max_pending, stats
        self.accepted = Cursor({GID_PRIVATE: last_mid})   # where the next catch-up starts (gids other than 1)
        self.public = PublicWindow(last_pmid or 0)        # the public mids accepted lately
        self.fetch_public = last_pmid is not None
        self.delivered = Cursor({GID_PRIVATE: last_mid, GID_PUBLIC: last_pmid or 0})  # what the application got
        self.pending: deque[Message] = deque()
        self.changed = asyncio.Event()   # a message was queued (the subscriber also sets it on a state change)
        self._taken = asyncio.Event()    # the application took a message

    def is_new(self, message: Message) -> bool:
        """True when ``message`` would be accepted."""
        if message.gid == GID_PUBLIC:
            return self.public.is_new(message.mid)
        return message.mid > self.accepted.get(message.gid)

    def accept(self, message: Message) -> None:
        """Queue ``message`` unless its mid was accepted already."""
        new = self.public.accept(message.mid) if message.gid == GID_PUBLIC else self.accepted.accept(message)
        if not new:
            self.stats.duplicates += 1
            log.debug("key=%s mid=%d gid=%d: duplicate dropped", self.key, message.mid, message.gid)
            return
        self.pending.append(message)
        self.changed.set()

    def take(self) -> Message | None:
        """The next message for the application, if one waits."""
        if not self.pending:
            return None
        message = self.pending.popleft()
        self.delivered.accept(message)
        self._taken.set()
        log.debug("key=%s mid=%d gid=%d: handed out", self.key, message.mid, message.gid)
        return message

    async def wait_room(self, limit: int) -> None:
        """Wait until at most ``limit`` messages wait for the application."""
        while len(self.pending) > limit:
            self._taken.clear()
            await self._taken.wait()


@dataclass(frozen=True)
class SessionSettings:
    key: str
    heartbeat: int
    heartbeat_timeout: float
    max_pending: int


class Session:
    """One subscribed link; :meth:`serve` raises why it ended."""

    def __init__(self, settings: SessionSettings, link: CometLink, web: WebApi, inbox: Inbox,
                 stats: SubscriberStats, on_gap: Callable[[Gap], Awaitable[None]], acker: Acker) -> None:
        self.settings, self.link, self.web, self.inbox, self.stats = settings, link, web, inbox, stats
        self._on_gap = on_gap
        self._acker = acker
        self._live = LiveBuffer()
        self._catching_up = True
        self._ack = asyncio.Event()
        self._acks_waiting = asyncio.Event()

    async def serve(self, on_live: Callable[[], Awaitable[None]]) -> None:
        """Catch up, call ``on_live``, then stay live until the link ends; always raises the reason it ended."""
        reader = asyncio.create_task(self._read())
        beat = asyncio.create_task(self._beat())
        catch_up = asyncio.create_task(self._catch_up())
        acks = asyncio.create_task(self._write_acks())
        self._acker.attach(self._acks_waiting.set)
        try:
            done, _ = await asyncio.wait({reader, beat, catch_up}, return_when=asyncio.FIRST_COMPLETED)
            if done == {catch_up} and catch_up.exception() is None:
                await on_live()
                done, _ = await asyncio.wait({reader, beat}, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda task: task is catch_up):   # the link's reason first
                error = task.exception()
                if error is not None:
                    raise error
            raise LinkClosed("session ended")
        finally:
            self._acker.detach()
            for task in (reader, beat, catch_up, acks):
                task.cancel()
            await asyncio.gather(reader, beat, catch_up, acks, return_exceptions=True)
            self._live.clear()

    async def _read(self) -> None:
        while True:
            for event in await self.link.events():
                if isinstance(event, Ack):
                    self._ack.set()
                elif isinstance(event, Payload):
                    self._on_payload(event.data)
                else:
                    raise LinkClosed(f"comet {self.link.address}: unexpected {event!r}")

    async def _write_acks(self) -> None:
        """Write the queued acks, at most ``ACKS_PER_WRITE`` per write and a pause between writes."""
        while True:
            batch = self._acker.next_batch()
            if not batch:
                self._acks_waiting.clear()
                await self._acks_waiting.wait()
                continue
            self.link.ack(batch)
            self.stats.acks += len(batch)
            log.debug("key=%s mid=%d: %d ack(s) written", self.settings.key, batch[-1], len(batch))
            await asyncio.sleep(ACK_PAUSE)

    def _on_payload(self, data: bytes) -> None:
        key, inbox = self.settings.key, self.inbox
        try:
            message = parse_message(key, data)
        except ValueError as exc:
            raise SessionEnded(f"unreadable message from the comet ({exc}): {data[:60]!r}") from None
        self.stats.live += 1
        log.debug("key=%s mid=%d gid=%d: received live", key, message.mid, message.gid)
        self._acker.carried(message)
        if self._catching_up:
            if len(self._live) >= self.settings.max_pending:
                self.stats.overflows += 1
                raise SessionEnded(f"{len(self._live)} live messages held during the catch-up")
            self._live.add(message)
        elif len(inbox.pending) >= self.settings.max_pending and inbox.is_new(message):
            self.stats.overflows += 1
            raise SessionEnded(f"{len(inbox.pending)} messages wait for the application; resuming later")
        else:
            inbox.accept(message)

    async def _beat(self) -> None:
        timeout = self.settings.heartbeat_timeout
        while True:
            await asyncio.sleep(self.settings.heartbeat)
            self._ack.clear()
            self.link.heartbeat()
            try:
                async with asyncio.timeout(timeout):   # not wait_for: on Python 3.11 it can swallow a cancellation
                    await self._ack.wait()
            except TimeoutError:
                self.stats.heartbeat_timeouts += 1
                raise SessionEnded(f"no heartbeat reply from comet {self.link.address} in {timeout}s") from None

    async def _catch_up(self) -> None:
        key, inbox = self.settings.key, self.inbox
        after = inbox.accepted.get(GID_PRIVATE)
        pafter = inbox.public.fetch_from() if inbox.fetch_public else None
        while True:
            await inbox.wait_room(self.settings.max_pending - 1)
            try:
                page = await self.web.fetch(key, after, pafter)
            except BadParameterError as exc:
                raise FetchRefused(f"key={key}: the web node refused the fetch: {exc}") from exc
            self.stats.fetches += 1
            if page.trimmed:
                await self._gap(GID_PRIVATE, after, page.messages)
            if page.ptrimmed and pafter is not None:
                await self._gap(GID_PUBLIC, pafter, page.public)
            if not page.messages and not page.public:
                break
            self.stats.fetched += len(page.messages) + len(page.public)
            for message in merge_page(self._live, page.messages) + merge_page(self._live, page.public):
                inbox.accept(message)
            after = _advance(key, "mid", after, page.messages)
            if pafter is not None:
                pafter = _advance(key, "pmid", pafter, page.public)
        for held in self._live.drain():
            inbox.accept(held)
        self._catching_up = False
        log.debug("key=%s mid=%d: caught up", key, inbox.accepted.get())

    async def _gap(self, gid: int, after: int, messages: list[Message]) -> None:
        gap = Gap(self.settings.key, gid, after, messages[0].mid if messages else None)
        self.stats.gaps += 1
        log.warning("key=%s mid=%d gid=%d: messages after this mid were trimmed on the server before they could be "
                    "fetched (next mid %s)", gap.key, after, gid, gap.next_mid)
        await self._on_gap(gap)


def _advance(key: str, name: str, after: int, messages: list[Message]) -> int:
    """Where the next page of one list starts: its last fetched mid (``after`` when it had none)."""
    if not messages:
        return after
    if messages[-1].mid <= after:
        raise ServerError(f"key={key}: msg/get after {name} {after} did not advance")
    return messages[-1].mid
