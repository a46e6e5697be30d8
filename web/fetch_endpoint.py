"""The fetch endpoints: /msg/get (legacy) and /1/msg/get, a key's stored messages after a mid and, with ``pmid``
/ ``p``, the public (broadcast) messages after a public mid.

Stored messages are inserted into the reply verbatim (the v1 form) or as JSON strings (gopush-cluster 1.0's legacy
form); one that is not UTF-8 JSON is sent as ``null`` and logged. The request layer (``ApiRequest``, ``Endpoint``,
``rpc_call``) is web.handlers'.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable, Callable

from message.client import FetchResult
from web.cluster import ClusterView
from web.config import LimitsConfig
from web.handlers import LEGACY, ApiRequest, Endpoint, ParamNames, Reply, rpc_call
from web.params import parse_key, parse_mid
from web.ret import json_string

log = logging.getLogger(__name__)

PUBLIC = "(public)"  # what the log shows in place of a key for a public (broadcast) message


class MsgEndpoint(Endpoint):
    """/msg/get (legacy: each message a JSON string, plus "pmsgs") and /1/msg/get (raw message JSON).

    With ``pmid`` (legacy) / ``p`` (v1), the public (broadcast, gid 1) messages after it come in ``pmsgs`` too, asked
    of the message node at the same time as the key's; without it the fetch is the key's alone, as before."""

    jsonp = True
    on_fetch: Callable[[str, int, list[int], str], None] | None = None  # (key, mid, mids sent, src): web/tracing.py

    def __init__(self, view: ClusterView, limits: LimitsConfig, names: ParamNames = LEGACY,
                 legacy: bool = True) -> None:
        super().__init__(view, limits, names)
        self.legacy = legacy
        self.pmid_name = "pmid" if legacy else "p"   # the last public mid the client has (absent: no public part)

    def serve(self, request: ApiRequest) -> Awaitable[Reply]:
        names = self.names
        key = parse_key(request.arg(names.key), self.limits.max_key_bytes, names.key)
        mid = parse_mid(request.arg(names.mid), names.mid)
        text = request.arg(self.pmid_name)
        pmid = parse_mid(text, self.pmid_name) if text else None
        return self._fetch(key, mid, pmid, request.remote_ip if self.on_fetch is not None else "")

    async def _fetch(self, key: str, mid: int, pmid: int | None, src: str) -> Reply:
        """The key's messages after ``mid`` and, when ``pmid`` is given, the public ones after it, both asked at
        once (``pmsgs`` and ``ptrimmed`` beside the usual fields). No data only when nothing is new or trimmed."""
        client = self.view.message_client()
        private_call = rpc_call(f"key={key}: message GetPrivate", client.get_private(key, mid))
        public: FetchResult | None = None
        if pmid is None:
            private = await private_call
        else:
            got_private, got_public = await asyncio.gather(
                private_call, rpc_call(f"key={key} pmid={pmid}: message GetPublic", client.get_public(pmid)),
                return_exceptions=True)
            if isinstance(got_private, BaseException):
                raise got_private
            if isinstance(got_public, BaseException):
                raise got_public
            private, public = got_private, got_public
        if self.on_fetch is not None and private.msgs:
            self.on_fetch(key, mid, [msg_id for msg_id, _ in private.msgs], src)
        if not (private.msgs or private.trimmed or (public is not None and (public.msgs or public.trimmed))):
            return None  # gopush-cluster: ret 0 and no data when there is nothing new
        item = _legacy_item if self.legacy else _item
        parts = [b'{"msgs":[', b",".join([item(key, msg_id, msg, 0) for msg_id, msg in private.msgs]), b"]"]
        if public is not None:
            parts += [b',"pmsgs":[', b",".join([item(PUBLIC, msg_id, msg, 1) for msg_id, msg in public.msgs]), b"]"]
        elif self.legacy:
            parts.append(b',"pmsgs":[]')
        if private.trimmed:
            parts.append(b',"trimmed":true')
            log.info("key=%s mid=%d: older messages were trimmed before this fetch", key, mid)
        if public is not None and public.trimmed:
            parts.append(b',"ptrimmed":true')
            log.info("key=%s pmid=%d: older public messages were trimmed before this fetch", key, pmid)
        parts.append(b"}")
        return b"".join(parts)


def _item(key: str, msg_id: int, msg: bytes, gid: int) -> bytes:
    """``{"msg": <message JSON verbatim>, "mid": N, "gid": G}`` (``key`` is PUBLIC for a public message)."""
    return b'{"msg":%b,"mid":%d,"gid":%d}' % (msg if _message_text(key, msg_id, msg) is not None else b"null",
                                               msg_id, gid)


def _legacy_item(key: str, msg_id: int, msg: bytes, gid: int) -> bytes:
    """gopush-cluster 1.0's form: the item is a JSON string holding ``{"msg": "<message JSON as a string>",
    "mid": N, "gid": G}``."""
    text = _message_text(key, msg_id, msg)
    inner = b'{"msg":%b,"mid":%d,"gid":%d}' % (b"null" if text is None else json_string(text), msg_id, gid)
    return json_string(inner.decode("utf-8"))


def _message_text(key: str, msg_id: int, msg: bytes) -> str | None:
    """A stored message as JSON text; None (JSON null) for a stored value that is not UTF-8 JSON."""
    try:
        text = msg.decode("utf-8")
        json.loads(text)
    except (ValueError, RecursionError):
        log.error("key=%s mid=%d: stored message is not UTF-8 JSON, sent as null", key, msg_id)
        return None
    return text
