"""CometTracer: what a comet records in the delivery trace, queued in a ``TraceBuffer`` for ``MessageRPC.Trace``.

One record per event, built from values the comet already holds (``message/trace_model.py`` has the layouts):

* a push (``pushed``): when it arrived (routed here), this node's name and instance, when the message node
  answered the save (so it is stored, when expire > 0), when it was written, the connections it was written to,
  those that could not take it and why (a queue overflow closes the connection), and the web node's ``accepted``
  time and source when the push carried them;
* an ack (``acked``): the connection and when;
* a connection subscribed (``opened``: id, peer, protocol, version) or closed (``closed``: why, as counted in
  ``/stat``: heartbeat timeout, queue overflow, client closed, moved to another node, fenced, node stopping, ...);
* a key that ``PushPrivates`` could not push (``failed``: not saved, not on this node).

``instance`` tells apart the processes that served one node name over time (an active comet and the standby that
took over): ``<host>/<pid>``. Each record is packed as it is made, so the buffer holds one bytes object per
record (the garbage collector never traverses what waits for the next batch). The buffer is lossy by design
(see ``thirdparty/trace_buffer.py``): tracing never delays a push or fails it.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Callable, Sequence

from comet.ack_waiters import PushMeta
from message import trace_model
from message.client import MessageAPI
from message.trace_api import rpc_sink, trace_api
from message.trace_model import pack
from thirdparty.trace_buffer import TraceBuffer, TraceBufferConfig


def instance_id() -> str:
    """``<host>/<pid>``: this process, among the comets that serve a node name over time."""
    return f"{socket.gethostname()[:64]}/{os.getpid()}"


class CometTracer:
    """Trace records of one comet node (see the module docstring)."""

    def __init__(self, node: str, buffer: TraceBuffer, *, clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self.instance = instance_id()
        self.buffer = buffer
        self.clock = clock

    def pushed(self, key: str, mid: int, routed_at: float, saved_at: float, written_at: float, conns: Sequence[int],
               failed: Sequence[tuple[int, str]], meta: PushMeta, size: int, expire: int) -> None:
        self.buffer.add((key, mid, pack(trace_model.pushed(routed_at, self.node, self.instance, saved_at, written_at,
                                                           conns, failed, meta.accepted, size, expire))))

    def acked(self, key: str, mid: int, conn_id: int) -> None:
        self.buffer.add((key, mid, pack(trace_model.acked(self.clock(), conn_id, self.instance))))

    def opened(self, key: str, conn_id: int, peer: str, proto: str, version: str) -> None:
        self.buffer.add((key, 0, pack(trace_model.opened(self.clock(), conn_id, self.node, self.instance, peer, proto,
                                                         version))))

    def closed(self, key: str, conn_id: int, reason: str) -> None:
        self.buffer.add((key, 0, pack(trace_model.closed(self.clock(), conn_id, self.instance, reason))))

    def failed(self, key: str, reason: str, meta: PushMeta, size: int, expire: int) -> None:
        src = meta.accepted[1] if meta.accepted is not None else None
        self.buffer.add((key, 0, pack(trace_model.failed(self.clock(), reason, self.node, src, size, expire))))


def make_tracer(node: str, config: TraceBufferConfig, message: MessageAPI) -> CometTracer | None:
    """A node's tracer, sending through ``message``; None when ``[trace] enabled`` is false or the message client
    takes no traces (an in-memory fake)."""
    if not config.enabled or trace_api(message) is None:
        return None
    buffer = TraceBuffer(f"comet {node}", rpc_sink(lambda: message), flush_interval=config.flush_interval,
                         max_batch=config.max_batch, max_pending=config.max_pending)
    return CometTracer(node, buffer)
