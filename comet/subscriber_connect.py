"""How the subscriber SDK gets a subscribed comet connection, and the errors that end a subscriber for good.

:class:`Connector` makes one attempt: look the key's comet up (``GET /1/server/get``), take a token (the one given,
or the ``token_provider``'s), connect and subscribe (``CometLink.open``). A refusal that another attempt may cure
(``-n``, ``-c``) is raised as it is and counted in ``stats.refusals``; ``-a`` asks the token provider for a new
token, at most ``MAX_TOKEN_REFUSALS`` times in a row; ``-p`` and a 65534 lookup end the subscriber
(:class:`SubscribeRefused`), as does ``-a`` without a provider or with a provider that gives no new token
(:class:`TokenRefused`). The subscriber (``comet/subscriber.py``) runs the session and the retries;
:func:`check_arguments` checks its arguments.
"""
from __future__ import annotations

import inspect
import logging
import ssl
from typing import Awaitable, Callable

from comet.subscriber_api import BadParameterError, PushClusterError
from comet.subscriber_http import WebApi
from comet.subscriber_link import CometLink, SubscribeRefusal
from comet.subscriber_session import SessionEnded, SubscriberStats

log = logging.getLogger(__name__)

MAX_TOKEN_REFUSALS = 3     # consecutive -a replies, with fresh tokens, before giving up
INT64_MAX = (1 << 63) - 1

TokenProvider = Callable[[], "Awaitable[str | None] | str | None"]


class SubscribeFailed(PushClusterError):
    """The subscriber stopped for good (see ``__cause__`` for the underlying error, if any)."""


class TokenRefused(SubscribeFailed):
    """The comet refused the token (``-a``) and no token provider gave a new one."""


class SubscribeRefused(SubscribeFailed):
    """The comet (``-p``) or the web node (65534) refused the key or heartbeat."""


class RetriesExhausted(SubscribeFailed):
    """``ReconnectPolicy.max_attempts`` consecutive attempts failed."""


def check_arguments(key: str, proto: str, heartbeat: int, last_mid: int, last_pmid: int | None,
                    timeouts: tuple[float, ...], max_pending: int) -> None:
    """ValueError for a Subscriber argument out of its range."""
    if not isinstance(key, str) or not key:
        raise ValueError("key must be a non-empty string")
    if proto not in ("tcp", "ws"):
        raise ValueError(f"proto must be 'tcp' or 'ws', not {proto!r}")
    if not isinstance(heartbeat, int) or heartbeat < 1:
        raise ValueError("heartbeat must be an integer >= 1 (seconds; comets require >= 30 by default)")
    for name, mid in (("last_mid", last_mid), ("last_pmid", 0 if last_pmid is None else last_pmid)):
        if type(mid) is not int or not 0 <= mid <= INT64_MAX:
            raise ValueError(f"{name} must be an integer 0..2**63-1")
    if min(timeouts) <= 0 or max_pending < 1:
        raise ValueError("timeouts must be > 0 and max_pending >= 1")


class Connector:
    """Look-up, token and subscribe of one key; :meth:`connect` is one attempt."""

    def __init__(self, web: WebApi, key: str, *, proto: str, heartbeat: int, token: str | None,
                 token_provider: TokenProvider | None, timeout: float, max_message: int,
                 tls: ssl.SSLContext | None, stats: SubscriberStats) -> None:
        self.web, self.key, self.proto, self.heartbeat = web, key, proto, heartbeat
        self.timeout, self.max_message, self.tls, self.stats = timeout, max_message, tls, stats
        self._token, self._token_provider, self._token_refusals = token, token_provider, 0

    async def connect(self) -> CometLink:
        """A subscribed link; SubscribeFailed for a refusal no retry can cure, else the retryable error."""
        self.stats.lookups += 1
        try:
            host, port = await self.web.server_for(self.key, self.proto)
        except BadParameterError as exc:
            raise SubscribeRefused(f"key={self.key}: the web node refused the key: {exc}") from exc
        if self._token is None and self._token_provider is not None:
            self._token = await self._new_token()
        try:
            link = await CometLink.open(self.proto, host, port, key=self.key, heartbeat=self.heartbeat,
                                        token=self._token or "", timeout=self.timeout,
                                        max_message=self.max_message, tls=self.tls)
        except SubscribeRefusal as exc:
            self.stats.refusals[exc.code] += 1
            await self._refused(exc)
            raise
        self.stats.sessions += 1
        self._token_refusals = 0
        return link

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
