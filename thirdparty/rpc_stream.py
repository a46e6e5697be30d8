"""Write coalescing for the MessagePack-RPC server and client.

:Status: used by ``thirdparty/rpc_server.py`` and ``thirdparty/rpc_client.py``.

tornado's ``IOStream.write`` tries a ``send()`` at once for every call. Pipelined calls produce many small frames
within one event-loop iteration; :class:`FrameWriter` sends the first at once and gathers the others of that
iteration into one write, so one ``send()`` carries them all. Frames keep their order.
"""
from __future__ import annotations

import asyncio

from tornado.iostream import IOStream, StreamClosedError


class FrameWriter:
    """``write(frame)`` sends the first frame of a loop iteration at once and batches the rest of that iteration.

    A lone call (the sequential case) goes out without delay; a burst of pipelined frames costs one extra
    ``send()`` for all but the first, issued when the loop comes round.
    """

    def __init__(self, stream: IOStream) -> None:
        self._stream = stream
        self._window_open = False  # a frame went out during this loop iteration
        self._frames: list[bytes] = []
        self._flushed: asyncio.Future[None] | None = None

    def write(self, frame: bytes) -> asyncio.Future[None]:
        """Write or queue ``frame``; the future resolves once it has been handed to the socket.

        The future fails with StreamClosedError if the stream closes first. Awaiting it is optional: its error is
        marked as retrieved, so an ignored failure is not reported as "never retrieved".
        """
        if self._stream.closed():
            raise StreamClosedError(real_error=self._stream.error)
        if not self._window_open:
            self._window_open = True
            asyncio.get_running_loop().call_soon(self._close_window)
            return self._stream.write(frame)
        if self._flushed is None:
            self._flushed = asyncio.get_running_loop().create_future()
        self._frames.append(frame)
        return self._flushed

    def _close_window(self) -> None:
        self._window_open = False
        frames, self._frames = self._frames, []
        flushed, self._flushed = self._flushed, None
        if flushed is None:
            return
        try:
            written = self._stream.write(frames[0] if len(frames) == 1 else b"".join(frames))
        except StreamClosedError as exc:
            _fail(flushed, exc)
            return

        def done(future: asyncio.Future[None]) -> None:
            if flushed.done():
                return
            if future.cancelled():
                _fail(flushed, StreamClosedError())
            elif (exc := future.exception()) is not None:
                _fail(flushed, exc)
            else:
                flushed.set_result(None)

        written.add_done_callback(done)


def _fail(future: asyncio.Future[None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        future.exception()  # mark as retrieved: callers may ignore write results
