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
        pmid = request.arg(self.pmid_name)
        if pmid:
            return self._fetch_with_public(key, mid, parse_mid(pmid, self.pmid_name),
                                           request.remote_ip if self.on_fetch is not None else "")
        return self._fetch(key, mid, request.remote_ip if self.on_fetch is not None else "")

    async def _fetch(self, key: str, mid: int, src: str = "") -> Reply:
        result: FetchResult = await rpc_call(f"key={key}: message GetPrivate",
                                             self.view.message_client().get_private(key, mid))
        if self.on_fetch is not None and result.msgs:
            self.on_fetch(key, mid, [msg_id for msg_id, _ in result.msgs], src)
        if not result.msgs and not result.trimmed:
            return None  # gopush-cluster: ret 0 and no data when there is nothing new
        item = self._legacy_item if self.legacy else _item
        parts = [b'{"msgs":[', b",".join([item(key, msg_id, msg) for msg_id, msg in result.msgs]), b"]"]
        if self.legacy:
            parts.append(b',"pmsgs":[]')
        if result.trimmed:
            parts.append(b',"trimmed":true')
            log.info("key=%s mid=%d: older messages were trimmed before this fetch", key, mid)
        parts.append(b"}")
        return b"".join(parts)

    @staticmethod
    def _legacy_item(key: str, msg_id: int, msg: bytes) -> bytes:
        """gopush-cluster 1.0's form: the item is a JSON string holding ``{"msg": "<message JSON as a string>",
        "mid": N, "gid": 0}``."""
        text = _message_text(key, msg_id, msg)
        inner = b'{"msg":%b,"mid":%d,"gid":0}' % (b"null" if text is None else json_string(text), msg_id)
        return json_string(inner.decode("utf-8"))

    async def _fetch_with_public(self, key: str, mid: int, pmid: int, src: str) -> Reply:
        """The key's messages after ``mid`` and the public ones after ``pmid``, both asked at once; ``pmsgs`` (and
        ``ptrimmed``) beside the usual fields. No data only when both are empty and nothing was trimmed."""
        client = self.view.message_client()
        private, public = await asyncio.gather(
            rpc_call(f"key={key}: message GetPrivate", client.get_private(key, mid)),
            rpc_call(f"key={key} pmid={pmid}: message GetPublic", client.get_public(pmid)),
            return_exceptions=True)
        if isinstance(private, BaseException):
            raise private
        if isinstance(public, BaseException):
            raise public
        if self.on_fetch is not None and private.msgs:
            self.on_fetch(key, mid, [msg_id for msg_id, _ in private.msgs], src)
        if not (private.msgs or private.trimmed or public.msgs or public.trimmed):
            return None
        item, public_item = (self._legacy_item, _legacy_public_item) if self.legacy else (_item, _public_item)
        parts = [b'{"msgs":[', b",".join([item(key, msg_id, msg) for msg_id, msg in private.msgs]),
                 b'],"pmsgs":[', b",".join([public_item(msg_id, msg) for msg_id, msg in public.msgs]), b"]"]
        if private.trimmed:
            parts.append(b',"trimmed":true')
            log.info("key=%s mid=%d: older messages were trimmed before this fetch", key, mid)
        if public.trimmed:
            parts.append(b',"ptrimmed":true')
            log.info("key=%s pmid=%d: older public messages were trimmed before this fetch", key, pmid)
        parts.append(b"}")
        return b"".join(parts)


def _item(key: str, msg_id: int, msg: bytes) -> bytes:
    """``{"msg": <message JSON verbatim>, "mid": N, "gid": 0}``."""
    return b'{"msg":%b,"mid":%d,"gid":0}' % (msg if _message_text(key, msg_id, msg) is not None else b"null", msg_id)


def _public_item(msg_id: int, msg: bytes) -> bytes:
    """A public message: ``{"msg": <message JSON verbatim>, "mid": N, "gid": 1}``."""
    return b'{"msg":%b,"mid":%d,"gid":1}' % (msg if _message_text(PUBLIC, msg_id, msg) is not None else b"null",
                                              msg_id)


def _legacy_public_item(msg_id: int, msg: bytes) -> bytes:
    """A public message in the legacy form: a JSON string holding ``{"msg": "<message JSON as a string>", "mid": N,
    "gid": 1}``."""
    text = _message_text(PUBLIC, msg_id, msg)
    inner = b'{"msg":%b,"mid":%d,"gid":1}' % (b"null" if text is None else json_string(text), msg_id)
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
