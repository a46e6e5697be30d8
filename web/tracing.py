"""WebTracer: what a web node records in the delivery trace, queued in a ``TraceBuffer`` for ``MessageRPC.Trace``.

The web node is the only one that sees some outcomes, so it records them (``message/trace_model.py``):

* a push that failed before a mid existed (``failed``, in the key's history): no comet node serves the key, the
  node has no RPC address, it could not be reached or did not answer in time, or it answered an error; with the
  back end's address, the message size and expire;
* a fetch (``/msg/get``): each message of the reply gets a ``fetched`` record (by whom, when), and the key's
  history one ``fetches`` record (which mids, after which mid).

A successful push is traced by the comet, with the ``at`` and ``src`` the web passes in the push's ``meta``
(``web/push_wait.py``), so a push costs the web no record of its own. The records go to the message node in
batches through the view's message client (looked up at each flush, so a ZooKeeper view's pool is followed);
tracing never delays or fails a request.
"""
from __future__ import annotations

import time
from typing import Callable

from message import trace_model
from message.trace_api import rpc_sink, trace_api
from thirdparty.trace_buffer import TraceBuffer, TraceBufferConfig
from web.cluster import ClusterView


class WebTracer:
    """Trace records of one web node (see the module docstring)."""

    def __init__(self, buffer: TraceBuffer, *, clock: Callable[[], float] = time.time) -> None:
        self.buffer = buffer
        self.clock = clock

    def failed(self, key: str, reason: str, node: str | None, src: str, size: int, expire: int) -> None:
        self.buffer.add((key, 0, trace_model.pack(trace_model.failed(self.clock(), reason, node, src, size, expire))))

    def fetched(self, key: str, after_mid: int, mids: list[int], src: str) -> None:
        """A ``/msg/get`` reply held ``mids`` (ascending, at least one) for ``key``."""
        now = self.clock()
        record = trace_model.pack(trace_model.fetched(now, src))
        add = self.buffer.add
        for mid in mids[:trace_model.MAX_MIDS]:
            add((key, mid, record))
        add((key, 0, trace_model.pack(trace_model.fetches(now, after_mid, mids, src))))


def make_tracer(config: TraceBufferConfig, view: ClusterView) -> WebTracer | None:
    """The node's tracer; None when ``[trace] enabled`` is false or the view's message client takes no traces (an
    in-memory fake)."""
    if not config.enabled or trace_api(view.message_client()) is None:
        return None
    buffer = TraceBuffer("web", rpc_sink(view.message_client), flush_interval=config.flush_interval,
                         max_batch=config.max_batch, max_pending=config.max_pending)
    return WebTracer(buffer)
