"""The multi-key push path shared by ``/push/mprivate`` and ``/push/tags``: one PushPrivates call per comet
batch (:func:`push_node`, the whole reply: failed keys, connections written to, outcomes) and the batching rule.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from comet.client import CometAPI

NodeResult = tuple[list[str], int, dict[str, str]]  # (failed keys, connections written to, outcome by key)


async def push_node(client: CometAPI, keys: Sequence[str], msg: bytes, expire: int,
                    meta: Mapping[str, Any] | None, timeout: float | None) -> NodeResult:
    """One PushPrivates call to one comet; raises what the client raises (RpcUnavailable, RemoteError)."""
    return await client.push_privates_counted(keys, msg, expire, meta, timeout=timeout)


def batches(keys: Sequence[str], size: int) -> list[Sequence[str]]:
    """``keys`` cut into runs of at most ``size`` (one PushPrivates call each), order kept."""
    return [keys[start:start + size] for start in range(0, len(keys), size)]
