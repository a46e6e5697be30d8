"""SaveBatcher: the save scripts submitted during one event-loop pass go to Redis as one pipeline.

Every push runs one save script. Sent one by one, each costs a round trip and redis-py's per-command overhead
(about 8-18 k/s from one process here); pipelined, 60-90 k/s. The batcher collects the saves submitted while the
loop is busy (concurrent SavePrivate calls, or all keys of one SavePrivates) and sends them together on the next
loop pass, at most ``MAX_BATCH`` per pipeline. Under light load a batch holds one save, so latency is unchanged.

Each save is still its own atomic script; the pipeline is not a transaction, so one key's failure (a script
error) fails only that key, and a connection failure fails the whole batch with ``StorageUnavailable``. Saves of
one key keep their order: they are queued and sent in submit order on one connection.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Sequence

import redis.exceptions
from redis.exceptions import NoScriptError

from message.storage import StorageUnavailable

if TYPE_CHECKING:
    from message.redis_storage import _Shard

log = logging.getLogger(__name__)

MAX_BATCH = 256
REDIS_ERRORS = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)

Call = tuple[list[str], Sequence[Any], "asyncio.Future[Any]"]


class SaveBatcher:
    """Queue of save-script calls for one shard, flushed once per event-loop pass."""

    def __init__(self, shard: _Shard) -> None:
        self._shard = shard
        self._pending: list[Call] = []
        self._running: set[asyncio.Task[None]] = set()

    def submit(self, keys: list[str], args: Sequence[Any]) -> asyncio.Future[Any]:
        """Queue one save script; the future gets its reply (the mid) or ``StorageUnavailable``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            task = asyncio.ensure_future(self._run(pending[start:start + MAX_BATCH]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[Call]) -> None:
        shard = self._shard
        try:
            replies = await self._execute(batch)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:  # a new or restarted Redis: load the script, send again what it refused (not run)
                await shard.client.script_load(shard.save_script.script)
                again = await self._execute([batch[i] for i in missing])
                for i, reply in zip(missing, again):
                    replies[i] = reply
        except REDIS_ERRORS as exc:
            self._fail(batch, StorageUnavailable(f"shard {shard.name}: save of {len(batch)} message(s) failed: "
                                                 f"{type(exc).__name__}: {exc}"))
            return
        except BaseException as exc:  # cancelled, or a bug: never leave a caller waiting
            self._fail(batch, StorageUnavailable(f"shard {shard.name}: save aborted: {exc!r}"))
            raise
        for (keys, _, future), reply in zip(batch, replies):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(StorageUnavailable(f"shard {shard.name}: save of {keys[0]} failed: {reply}"))
            else:
                future.set_result(reply)

    async def _execute(self, batch: list[Call]) -> list[Any]:
        """EVALSHA every call in one pipeline; per-call errors come back as exception objects.

        EVALSHA directly rather than redis-py's Script in a pipeline, which asks SCRIPT EXISTS before every
        pipeline (one more round trip per batch); a NOSCRIPT reply is handled by the caller instead.
        """
        sha = self._shard.save_script.sha
        pipe = self._shard.client.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(sha, len(keys), *keys, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    @staticmethod
    def _fail(batch: list[Call], error: StorageUnavailable) -> None:
        for _, _, future in batch:
            if not future.done():
                future.set_exception(error)
