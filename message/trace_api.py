"""How comet and web nodes reach the delivery trace: ``TraceAPI`` (MessageRPC.Trace / MsgTrace / KeyTrace) and the
sink that sends their trace batches.

``message.client.MessageClient`` and ``MessagePool`` implement :class:`TraceAPI`; a ``MessageAPI`` that does not
(a test's in-memory fake) has no trace: :func:`trace_api` returns None for it, and the roles then record nothing.

On the wire (``MessageRPC.Trace(records)``) a batch is a list of ``[key, mid, record]``, where record is one
``message.trace_model`` record packed with msgpack (packed by the sender, so the message node stores the bytes
as they came) and mid is 0 for a record of the key's history. The reply is how many records were kept.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol, runtime_checkable


MSG_TRACE = "MsgTrace"
KEY_TRACE = "KeyTrace"
PendingRecord = tuple[str, int, bytes]  # what a role queues: key, mid (0: key history), packed record


@runtime_checkable
class TraceAPI(Protocol):
    """The trace methods of a message node client."""

    async def trace(self, records: list[Any]) -> int:
        """Send a batch of ``[key, mid, packed record]`` (lists or tuples)."""

    async def trace_query(self, method: str, *params: Any) -> dict[str, Any]:
        """``MsgTrace(key, mid)`` or ``KeyTrace(key)``: the trace document."""


def trace_api(client: object) -> TraceAPI | None:
    """``client`` as a TraceAPI, or None when it has no trace methods."""
    return client if isinstance(client, TraceAPI) else None


def rpc_sink(client: Callable[[], object]) -> Callable[[list[PendingRecord]], Awaitable[object]]:
    """A ``TraceBuffer`` sink that sends a batch of packed records through ``client()`` (looked up at every flush:
    a web node's view may swap its message client); a client without trace methods drops the batch."""

    async def send(batch: list[PendingRecord]) -> object:
        api = trace_api(client())
        if api is None:
            raise RuntimeError("the message client does not take traces")
        return await api.trace(batch)  # tuples go out as msgpack arrays

    return send
