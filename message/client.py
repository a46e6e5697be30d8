"""The message role's public face: ``MessageAPI``, ``MessageClient`` (one node), ``MessagePool`` (many nodes) and
``MessageNodeInfo`` (what a message node publishes in ZooKeeper).

Comet and web nodes import only this module (and, through it, ``message.storage``'s ``FetchResult``, which has
no I/O). Calls raise ``thirdparty.rpc_client.RpcUnavailable`` (``RpcTimeout``) when the node cannot be reached
in time and ``RemoteError`` with the node's code (65534 bad parameter, 65535 storage unavailable) otherwise;
a reply of the wrong shape raises ``RemoteError(ERR_INTERNAL, ...)``.

``MessagePool`` spreads calls over several nodes by weight and fails over to another node only where that cannot
store a message twice (see its docstring).

This module holds only ``MessageClientConfig`` and re-exports the rest from where it lives: ``MessageAPI`` and
``MessageClient`` in ``message.node_client``, ``MessagePool`` and ``MessageNodeInfo`` in ``message.pool`` (which
builds on ``MessageClient``, hence a module of its own rather than this one: no import cycle).
"""
from __future__ import annotations

from dataclasses import dataclass

from message.node_client import MessageAPI, MessageClient
from message.pool import MessageNodeInfo, MessagePool
from message.storage import FetchResult
from thirdparty.confload import ConfigError, parse_address

__all__ = ["FetchResult", "MessageAPI", "MessageClient", "MessageNodeInfo", "MessagePool"]


@dataclass(frozen=True)
class MessageClientConfig:
    """``[message]`` of a comet or web config: the message node its MessageClient calls."""

    rpc: str = "127.0.0.1:7070"  # MessageRPC host:port
    timeout: float = 3.0         # seconds per call

    def check(self) -> None:
        parse_address(self.rpc)
        if self.timeout <= 0:
            raise ConfigError("timeout must be > 0")
