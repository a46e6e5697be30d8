"""The Python subscriber SDK: one key's messages from a pushcluster, in mid order, each exactly once.

::

    async with Subscriber("http://127.0.0.1:8090", "alice", last_mid=saved) as sub:
        async for message in sub:              # or Subscriber(..., on_message=callback)
            handle(message.value)              # message.key / mid / gid / raw (bytes) / value
            save(sub.last_mid)                 # persist it: the next run starts there

Life cycle, repeated until :meth:`Subscriber.close` or a fatal error:

1. look up the key's comet with ``GET /1/server/get?k=KEY&p=1|2`` on the web node's public listener;
2. connect over TCP or WebSocket (TLS / wss with ``tls=True``; ``ssl_context`` sets the trusted certificates for
   the comet and an ``https://`` web URL) and subscribe (key, heartbeat, token, version "1.0": new JSON form);
3. catch up: ``GET /1/msg/get?k=KEY&m=LAST`` from the last accepted mid, again from the last fetched mid until
   a reply is empty (a reply is bounded in bytes, docs/protocol.md); live messages that arrive meanwhile are
   held and merged in mid order (``subscriber_logic.LiveBuffer``); a ``trimmed`` reply is a gap the server
   cannot fill: ``on_gap(Gap)`` is called and ``last_gap`` set;
4. live: messages as the comet writes them; a heartbeat every ``heartbeat`` seconds, and a reply missing for
   ``heartbeat_timeout`` seconds counts as a dead connection (a half-open TCP connection never says so itself).

Anything that ends a session — the connection dropped or closed by a comet that stops or is fenced, ``-n``
(the key is not on that comet: the next attempt looks it up again), ``-c``, a web node that is unreachable or
answers 1001/65535, a missing heartbeat reply — leads to a new attempt after a jittered exponential backoff
(``ReconnectPolicy``; reset once a session is caught up). Fatal, ending the subscriber with
:class:`SubscribeFailed` (raised by the iterator and :meth:`Subscriber.wait_closed`): ``-p`` or 65534 (the key
or heartbeat is not acceptable), ``-a`` (token refused) unless ``token_provider`` gives a new token, and
``max_attempts`` consecutive failures when the policy sets one.

Exactly once, in order: every message passes ``subscriber_logic.Cursor``, keyed by (gid, mid): a mid at or below
the last accepted one of its gid is a duplicate (the same message live and fetched) and is dropped.
``last_mid`` is the last mid handed to the application; the next catch-up starts from the last accepted one.
Online-only messages (pushed with expire 0) are never stored: one missed while disconnected is gone, as the
server documents, and one read from the comet only after a newer stored message was fetched is dropped (mid
order wins; the merge keeps every one that arrived before that point). Messages wait in a queue between the connection and the application; past ``max_pending``
the connection is dropped (the messages stay stored) and resumed when the application has caught up.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import random
import ssl
from typing import AsyncIterator, Awaitable, Callable

from comet.subscriber_api import GID_PRIVATE, BadParameterError, Message, PushClusterError
from comet.subscriber_http import HttpClient, WebApi
from comet.subscriber_link import CometLink, LinkClosed, SubscribeRefusal
from comet.subscriber_logic import Backoff, ReconnectPolicy
from comet.subscriber_session import (
    BACKOFF, CATCHING_UP, CLOSED, CONNECTING, FAILED, LIVE, NEW, FetchRefused, Gap, Inbox, Session, SessionEnded,
    SessionSettings, SubscriberStats, call_back,
)

__all__ = ["Subscriber", "Message", "Gap", "SubscriberStats", "ReconnectPolicy", "SubscribeFailed", "TokenRefused",
           "SubscribeRefused", "RetriesExhausted", "NEW", "CONNECTING", "CATCHING_UP", "LIVE", "BACKOFF", "CLOSED",
           "FAILED"]

log = logging.getLogger(__name__)

MAX_TOKEN_REFUSALS = 3     # consecutive -a replies, with fresh tokens, before giving up
CLOSE_TIMEOUT = 5.0        # seconds close() waits for the background tasks to end
WARN_AFTER = 3             # consecutive failed attempts logged at INFO; from this one on at WARNING
INT64_MAX = (1 << 63) - 1
RETRYABLE = (PushClusterError, LinkClosed, SubscribeRefusal, SessionEnded, TimeoutError)

OnMessage = Callable[[Message], "Awaitable[None] | None"]
OnGap = Callable[[Gap], "Awaitable[None] | None"]
OnState = Callable[[str], None]
TokenProvider = Callable[[], "Awaitable[str | None] | str | None"]


class SubscribeFailed(PushClusterError):
    """The subscriber stopped for good (see ``__cause__`` for the underlying error, if any)."""


class TokenRefused(SubscribeFailed):
    """The comet refused the token (``-a``) and no token provider gave a new one."""


class SubscribeRefused(SubscribeFailed):
    """The comet (``-p``) or the web node (65534) refused the key or heartbeat."""


class RetriesExhausted(SubscribeFailed):
    """``ReconnectPolicy.max_attempts`` consecutive attempts failed."""


class Subscriber:
    """One key's subscription; see the module docstring. Not thread-safe: use it from one event loop."""

    def __init__(self, web_url: str, key: str, *, proto: str = "tcp", heartbeat: int = 30, token: str | None = None,
                 token_provider: TokenProvider | None = None, last_mid: int = 0,
                 on_message: OnMessage | None = None, on_gap: OnGap | None = None, on_state: OnState | None = None,
                 tls: bool = False, ssl_context: ssl.SSLContext | None = None,
                 reconnect: ReconnectPolicy | None = None, heartbeat_timeout: float = 10.0,
                 connect_timeout: float = 10.0, http_timeout: float = 10.0, max_pending: int = 10_000,
                 max_message_bytes: int = 1 << 20, rng: random.Random | None = None) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string")
        if proto not in ("tcp", "ws"):
            raise ValueError(f"proto must be 'tcp' or 'ws', not {proto!r}")
        if not isinstance(heartbeat, int) or heartbeat < 1:
            raise ValueError("heartbeat must be an integer >= 1 (seconds; comets require >= 30 by default)")
        if not isinstance(last_mid, int) or not 0 <= last_mid <= INT64_MAX:
            raise ValueError("last_mid must be an integer 0..2**63-1")
        if min(heartbeat_timeout, connect_timeout, http_timeout) <= 0 or max_pending < 1:
            raise ValueError("timeouts must be > 0 and max_pending >= 1")
        self.key, self.proto, self.heartbeat = key, proto, heartbeat
        self.connect_timeout, self.max_message_bytes = connect_timeout, max_message_bytes
        self.stats = SubscriberStats()
        self.last_gap: Gap | None = None
        self.error: SubscribeFailed | None = None
        self._settings = SessionSettings(key, heartbeat, heartbeat_timeout, max_pending)
        self._token, self._token_provider, self._token_refusals = token, token_provider, 0
        self._on_message, self._on_gap, self._on_state = on_message, on_gap, on_state
        self._policy = reconnect or ReconnectPolicy()
        self._rng = rng
        self._tls = (ssl_context or ssl.create_default_context()) if tls else None
        self._http = HttpClient(web_url, timeout=http_timeout, max_idle=1, ssl_context=ssl_context)
        self._web = WebApi(self._http)
        self._inbox = Inbox(key, last_mid, max_pending, self.stats)
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
        self.stats.lookups += 1
        try:
            host, port = await self._web.server_for(self.key, self.proto)
        except BadParameterError as exc:
            raise SubscribeRefused(f"key={self.key}: the web node refused the key: {exc}") from exc
        if self._token is None and self._token_provider is not None:
            self._token = await self._new_token()
        try:
            link = await CometLink.open(self.proto, host, port, key=self.key, heartbeat=self.heartbeat,
                                        token=self._token or "", timeout=self.connect_timeout,
                                        max_message=self.max_message_bytes, tls=self._tls)
        except SubscribeRefusal as exc:
            self.stats.refusals[exc.code] += 1
            await self._refused(exc)
            raise
        self.stats.sessions += 1
        self._token_refusals = 0
        log.info("key=%s mid=%d: subscribed on comet %s over %s", self.key, self._inbox.accepted.get(),
                 link.address, self.proto)

        async def on_live() -> None:
            backoff.reset()
            self._set_state(LIVE)
            await self._http.close_idle()   # the next lookup is after the next drop: hold no socket till then

        self._set_state(CATCHING_UP)
        try:
            await Session(self._settings, link, self._web, self._inbox, self.stats, self._gap).serve(on_live)
        except FetchRefused as exc:
            raise SubscribeRefused(str(exc)) from exc
        finally:
            await link.close()

    async def _refused(self, exc: SubscribeRefusal) -> None:
        """Raise SubscribeFailed for a refusal that another attempt cannot cure; return to retry."""
        if exc.code == "p":
            raise SubscribeRefused(f"key={self.key}: {exc}") from exc
        if exc.code != "a":
            return
        self._token_refusals += 1
        if self._token_provider is None:
            raise TokenRefused(f"key={self.key}: {exc}; no token provider") from exc
        if self._token_refusals > MAX_TOKEN_REFUSALS:
            raise TokenRefused(f"key={self.key}: {self._token_refusals} tokens refused in a row") from exc
        token = await self._new_token()
        if not token:
            raise TokenRefused(f"key={self.key}: {exc}; the token provider gave no new token") from exc
        self._token = token

    async def _new_token(self) -> str | None:
        assert self._token_provider is not None
        try:
            result = self._token_provider()
            token = await result if inspect.isawaitable(result) else result
        except Exception as exc:
            log.error("key=%s: token provider failed", self.key, exc_info=True)
            raise SessionEnded(f"token provider failed: {exc!r}") from exc
        if token is not None and not isinstance(token, str):
            raise TokenRefused(f"key={self.key}: the token provider returned {type(token).__name__}, not str")
        return token
