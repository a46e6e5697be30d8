"""The Python subscriber SDK: one key's messages from a pushcluster, in mid order, each exactly once.

::

    async with Subscriber("http://127.0.0.1:8090", "alice", last_mid=saved, last_pmid=saved_p) as sub:
        async for message in sub:              # or Subscriber(..., on_message=callback)
            handle(message.value)              # message.key / mid / gid (0 private, 1 public) / raw (bytes) / value
            save(sub.last_mid, sub.last_pmid)  # persist them: the next run starts there

Life cycle, repeated until :meth:`Subscriber.close` or a fatal error:

1. look up the key's comet with ``GET /1/server/get?k=KEY&p=1|2`` on the web node's public listener;
2. connect over TCP or WebSocket (TLS / wss with ``tls=True``; ``ssl_context`` sets the trusted certificates for
   the comet and an ``https://`` web URL) and subscribe (key, heartbeat, token, version "1.0": new JSON form);
3. catch up: ``GET /1/msg/get?k=KEY&m=LAST&p=PLAST`` from the last accepted mid (and public mid), again from
   the last fetched ones until a reply is empty (a reply is bounded in bytes, docs/protocol.md); live messages
   that arrive meanwhile are held and merged in mid order (``subscriber_logic.LiveBuffer``); a ``trimmed`` (or
   ``ptrimmed``) reply is a gap the server cannot fill: ``on_gap(Gap)`` is called (gid 0 or 1), ``last_gap`` set;
4. live: messages as the comet writes them; a heartbeat every ``heartbeat`` seconds, and a reply missing for
   ``heartbeat_timeout`` seconds counts as a dead connection (a half-open TCP connection never says so itself).

Anything that ends a session — the connection dropped or closed by a comet that stops or is fenced, ``-n``
(the key is not on that comet: the next attempt looks it up again), ``-c``, a web node that is unreachable or
answers 1001/65535, a missing heartbeat reply — leads to a new attempt after a jittered exponential backoff
(``ReconnectPolicy``; reset once a session is caught up). Fatal, ending the subscriber with
:class:`SubscribeFailed` (raised by the iterator and :meth:`Subscriber.wait_closed`): ``-p`` or 65534 (the key
or heartbeat is not acceptable), ``-a`` (token refused) unless ``token_provider`` gives a new token, and
``max_attempts`` consecutive failures when the policy sets one.

Exactly once, in order: every private message passes ``subscriber_logic.Cursor``: a mid at or below the last
accepted one is a duplicate (the same message live and fetched) and is dropped. ``last_mid`` is the last mid
handed to the application; the next catch-up starts from the last accepted one. Public messages (gid 1,
broadcasts) pass a ``subscriber_public.PublicWindow``: two web nodes broadcasting at once may reach a comet in
either order, so an unseen public mid is accepted even below the newest (the last 1024 are remembered), and each
catch-up asks for public messages from 10 s below the newest one. ``last_pmid`` (default 0: every stored public
message; ``None``: public messages are never fetched, live ones are still handed out) is where they start.
Acknowledgements (``ack=True``): once the application took a private message (the iterator handed it out, or
``on_message`` returned), its mid is acknowledged to the comet if the open connection carried it
(``subscriber_acks.Acker``); this is what ``wait=acked`` pushes and the delivery trace see.
Online-only messages (pushed with expire 0) are never stored: one missed while disconnected is gone, and one
read from the comet only after a newer stored message was fetched is dropped (mid order wins). Messages wait in
a queue for the application; past ``max_pending`` the connection is dropped (the messages stay stored) and
resumed when the application has caught up.
"""
from __future__ import annotations

import asyncio
import logging
import random
import ssl
from typing import AsyncIterator, Awaitable, Callable

from comet.subscriber_acks import Acker
from comet.subscriber_api import GID_PRIVATE, GID_PUBLIC, Message, PushClusterError
from comet.subscriber_connect import (
    Connector, RetriesExhausted, SubscribeFailed, SubscribeRefused, TokenProvider, TokenRefused, check_arguments,
)
from comet.subscriber_http import HttpClient, WebApi
from comet.subscriber_link import LinkClosed, SubscribeRefusal
from comet.subscriber_logic import Backoff, ReconnectPolicy
from comet.subscriber_session import (
    BACKOFF, CATCHING_UP, CLOSED, CONNECTING, FAILED, LIVE, NEW, FetchRefused, Gap, Inbox, Session, SessionEnded,
    SessionSettings, SubscriberStats, call_back,
)

__all__ = ["Subscriber", "Message", "Gap", "SubscriberStats", "ReconnectPolicy", "SubscribeFailed", "TokenRefused",
           "SubscribeRefused", "RetriesExhausted", "NEW", "CONNECTING", "CATCHING_UP", "LIVE", "BACKOFF", "CLOSED",
           "FAILED"]

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0        # seconds close() waits for the background tasks to end
WARN_AFTER = 3             # consecutive failed attempts logged at INFO; from this one on at WARNING
RETRYABLE = (PushClusterError, LinkClosed, SubscribeRefusal, SessionEnded, TimeoutError)

OnMessage = Callable[[Message], "Awaitable[None] | None"]
OnGap = Callable[[Gap], "Awaitable[None] | None"]
OnState = Callable[[str], None]


class Subscriber:
    """One key's subscription; see the module docstring. Not thread-safe: use it from one event loop."""

    def __init__(self, web_url: str, key: str, *, proto: str = "tcp", heartbeat: int = 30, token: str | None = None,
                 token_provider: TokenProvider | None = None, last_mid: int = 0, last_pmid: int | None = 0,
                 ack: bool = True, on_message: OnMessage | None = None, on_gap: OnGap | None = None,
                 on_state: OnState | None = None, tls: bool = False, ssl_context: ssl.SSLContext | None = None,
                 reconnect: ReconnectPolicy | None = None, heartbeat_timeout: float = 10.0,
                 connect_timeout: float = 10.0, http_timeout: float = 10.0, max_pending: int = 10_000,
                 max_message_bytes: int = 1 << 20, rng: random.Random | None = None) -> None:
        check_arguments(key, proto, heartbeat, last_mid, last_pmid, (heartbeat_timeout, connect_timeout, http_timeout),
                        max_pending)
        self.key, self.proto, self.heartbeat = key, proto, heartbeat
        self.stats = SubscriberStats()
        self.last_gap: Gap | None = None
        self.error: SubscribeFailed | None = None
        self._settings = SessionSettings(key, heartbeat, heartbeat_timeout, max_pending)
        self._on_message, self._on_gap, self._on_state = on_message, on_gap, on_state
        self._policy = reconnect or ReconnectPolicy()
        self._rng = rng
        self._http = HttpClient(web_url, timeout=http_timeout, max_idle=1, ssl_context=ssl_context)
        self._web = WebApi(self._http)
        self._connector = Connector(self._web, key, proto=proto, heartbeat=heartbeat, token=token,
                                    token_provider=token_provider, timeout=connect_timeout,
                                    max_message=max_message_bytes,
                                    tls=(ssl_context or ssl.create_default_context()) if tls else None,
                                    stats=self.stats)
        self._inbox = Inbox(key, last_mid, max_pending, self.stats, last_pmid)
        self._acker = Acker(ack)
        self._state = NEW
        self._closed = False
        self._runner: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    # -- public API ---------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """new, connecting, catching_up, live, backoff, closed or failed."""
        return self._state

    @property
    def last_mid(self) -> int:
        """The mid of the last private message handed to the application (persist it to resume there)."""
        return self._inbox.delivered.get(GID_PRIVATE)

    @property
    def last_pmid(self) -> int | None:
        """The highest public mid (gid 1) handed to the application (persist it as ``last_pmid`` to resume); None
        while public messages are off (``last_pmid=None``) and none was handed out."""
        last = self._inbox.delivered.get(GID_PUBLIC)
        return None if last == 0 and not self._inbox.fetch_public else last

    @property
    def positions(self) -> dict[int, int]:
        """``{gid: last mid handed out}``."""
        return self._inbox.delivered.positions()

    async def start(self) -> None:
        """Start connecting in the background (``async with`` and iteration do it too)."""
        self._ensure_started()

    async def __aenter__(self) -> Subscriber:
        self._ensure_started()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[Message]:
        if self._on_message is not None:
            raise TypeError("this subscriber delivers to on_message; it cannot be iterated too")
        return self

    async def __anext__(self) -> Message:
        self._ensure_started()
        message = await self._next()
        if message is not None:
            self._acker.taken(message)
            return message
        if self.error is not None:
            raise self.error
        raise StopAsyncIteration

    async def wait_live(self) -> None:
        """Wait until subscribed and caught up; SubscribeFailed if the subscriber failed or was closed."""
        self._ensure_started()
        while self._state != LIVE:
            if self.error is not None:
                raise self.error
            if self._state == CLOSED:
                raise SubscribeFailed(f"key={self.key}: subscriber closed")
            self._inbox.changed.clear()
            await self._inbox.changed.wait()

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` or a fatal error; raise that error."""
        self._ensure_started()
        if self._runner is not None:
            await asyncio.wait({self._runner})
        if self._dispatcher is not None and self._dispatcher is not asyncio.current_task():
            await asyncio.wait({self._dispatcher})
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        """Stop: end the connection and the background tasks. Messages not yet handed out are not; the next
        subscriber started from ``last_mid`` fetches them."""
        if self._closed:
            return
        self._closed = True
        if self._state != FAILED:
            self._set_state(CLOSED)
        current = asyncio.current_task()
        tasks = [task for task in (self._runner, self._dispatcher) if task is not None and task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            if stuck:
                log.error("key=%s: %d task(s) did not stop within %.0fs", self.key, len(stuck), CLOSE_TIMEOUT)
        await self._http.close()
        log.info("key=%s mid=%d: subscriber closed", self.key, self.last_mid)

    # -- handing messages to the application -------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._runner is None and self._state == NEW:
            self._runner = asyncio.create_task(self._run(), name=f"subscriber:{self.key}")
            if self._on_message is not None:
                self._dispatcher = asyncio.create_task(self._dispatch(self._on_message),
                                                       name=f"subscriber-dispatch:{self.key}")

    async def _next(self) -> Message | None:
        """The next message for the application; None once closed, or failed with nothing left."""
        while self._state != CLOSED:
            message = self._inbox.take()
            if message is not None:
                return message
            if self._state == FAILED:
                return None
            self._inbox.changed.clear()
            await self._inbox.changed.wait()
        return None

    async def _dispatch(self, on_message: OnMessage) -> None:
        while (message := await self._next()) is not None:
            try:
                await call_back(on_message, message)
            except Exception:
                log.error("key=%s mid=%d: on_message failed", self.key, message.mid, exc_info=True)
            else:
                self._acker.taken(message)

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        self._inbox.changed.set()
        log.debug("key=%s mid=%d: %s", self.key, self.last_mid, state)
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                log.error("key=%s: on_state failed", self.key, exc_info=True)

    async def _gap(self, gap: Gap) -> None:
        self.last_gap = gap
        if self._on_gap is not None:
            try:
                await call_back(self._on_gap, gap)
            except Exception:
                log.error("key=%s mid=%d: on_gap failed", self.key, gap.after_mid, exc_info=True)

    # -- attempts -----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(self._policy, self._rng)
        try:
            while True:
                try:
                    await self._inbox.wait_room(self._settings.max_pending // 2)
                    await self._attempt(backoff)
                    reason = "session ended"
                except SubscribeFailed as exc:
                    self._fail(exc)
                    return
                except RETRYABLE as exc:
                    reason = str(exc) or type(exc).__name__
                delay = backoff.next_delay()
                if backoff.exhausted:
                    self._fail(RetriesExhausted(f"key={self.key}: gave up after {backoff.failures} attempts: "
                                                f"{reason}"))
                    return
                log.log(logging.WARNING if backoff.failures >= WARN_AFTER else logging.INFO,
                        "key=%s mid=%d: %s; attempt %d failed, next in %.2fs", self.key,
                        self._inbox.accepted.get(), reason, backoff.failures, delay)
                self._set_state(BACKOFF)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("key=%s: subscriber failed unexpectedly", self.key, exc_info=True)
            self._fail(SubscribeFailed(f"key={self.key}: internal error: {exc!r}"))

    def _fail(self, exc: SubscribeFailed) -> None:
        log.error("key=%s mid=%d: subscriber stopped: %s", self.key, self.last_mid, exc)
        self.error = exc
        self._set_state(FAILED)

    async def _attempt(self, backoff: Backoff) -> None:
        """Look up, subscribe, serve one session; raises why it ended."""
        self._set_state(CONNECTING)
        link = await self._connector.connect()
        log.info("key=%s mid=%d: subscribed on comet %s over %s", self.key, self._inbox.accepted.get(),
                 link.address, self.proto)

        async def on_live() -> None:
            backoff.reset()
            self._set_state(LIVE)
            await self._http.close_idle()   # the next lookup is after the next drop: hold no socket till then

        self._set_state(CATCHING_UP)
        try:
            await Session(self._settings, link, self._web, self._inbox, self.stats, self._gap,
                          self._acker).serve(on_live)
        except FetchRefused as exc:
            raise SubscribeRefused(str(exc)) from exc
        finally:
            await link.close()
