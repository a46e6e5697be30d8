"""Write coalescing for the MessagePack-RPC server and client (on asyncio transports).

:Status: used by ``thirdparty/rpc_server.py`` and ``thirdparty/rpc_client.py``.

A transport's ``write`` tries a ``send()`` at once for every call. Pipelined calls produce many small frames
within one event-loop pass; :class:`FrameWriter` sends the first at once (a lone call, the sequential case, goes
out without delay) and gathers the others of that pass into one write at its end, so one ``send()`` carries them
all. Frames keep their order. No future per write: the transport buffers what the kernel does not take, and its
owner watches ``pause_writing``/``resume_writing`` for back pressure; a frame still queued when the connection
closes is dropped, which its owner learns from ``connection_lost``.
"""
from __future__ import annotations

import asyncio


class FrameWriter:
    """``write(frame)`` sends the first frame of a loop pass at once and batches the rest of that pass."""

    __slots__ = ("_transport", "_loop", "_window_open", "_frames")

    def __init__(self, transport: asyncio.WriteTransport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._window_open = False  # a frame went out during this loop pass
        self._frames: list[bytes] = []

    @property
    def closed(self) -> bool:
        return self._transport.is_closing()

    def write(self, frame: bytes) -> None:
        """Write ``frame`` now, or at the end of this loop pass; ConnectionResetError if the transport is closing."""
        transport = self._transport
        if transport.is_closing():
            raise ConnectionResetError("connection closed")
        if self._window_open:
            self._frames.append(frame)
            return
        self._window_open = True
        self._loop.call_soon(self._close_window)
        transport.write(frame)

    def _close_window(self) -> None:
        self._window_open = False
        frames = self._frames
        if not frames:
            return
        self._frames = []
        if not self._transport.is_closing():
            self._transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
