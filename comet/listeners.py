"""The comet's listeners: binding a tornado server (RPC, stat) to ``host:port`` and serving the client listeners
(TCP, WebSocket) with the event loop's own server, over TLS when configured; the per-address limiter of the
client connections. ``comet.node.CometNode`` uses these when it starts.

A listener bound to port 0 gets a free port: every function here returns the address actually bound.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Callable

from tornado.netutil import bind_sockets
from tornado.tcpserver import TCPServer

from comet.config import CometConfig
from comet.connection import ClientConnection
from thirdparty.confload import parse_address
from thirdparty.rate_limit import AddressLimiter, parse_networks

__all__ = ["CLIENT_BACKLOG", "TLS_SHUTDOWN_TIMEOUT", "address_limiter", "bind_server", "bound_address",
           "serve_clients"]

CLIENT_BACKLOG = 1024  # pending connections per client listener (the kernel caps it at net.core.somaxconn)
TLS_SHUTDOWN_TIMEOUT = 5.0  # seconds a TLS peer has to answer our close_notify before the connection is dropped


def bound_address(sock: socket.socket) -> str:
    """``host:port`` of a bound socket (``[host]:port`` for IPv6)."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


def bind_server(server: TCPServer, address: str) -> str:
    """Listen on ``host:port`` and return the address actually bound (port 0 -> the port chosen)."""
    host, port = parse_address(address)
    sockets = bind_sockets(port, address=host)
    server.add_sockets(sockets)
    return bound_address(sockets[0])


async def serve_clients(factory: Callable[[], ClientConnection], address: str, servers: list[asyncio.Server], *,
                        tls: ssl.SSLContext | None = None, handshake_timeout: float = 5.0) -> str:
    """Accept clients on ``host:port`` with the event loop's server (appended to ``servers``), over TLS when
    ``tls`` is given; the bound address."""
    host, port = parse_address(address)
    sockets = bind_sockets(port, address=host, backlog=CLIENT_BACKLOG)
    loop = asyncio.get_running_loop()
    for sock in sockets:
        if tls is None:
            servers.append(await loop.create_server(factory, sock=sock, backlog=CLIENT_BACKLOG))
        else:
            servers.append(await loop.create_server(factory, sock=sock, backlog=CLIENT_BACKLOG, ssl=tls,
                                                    ssl_handshake_timeout=handshake_timeout,
                                                    ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT))
    return bound_address(sockets[0])


def address_limiter(config: CometConfig) -> AddressLimiter:
    """The per-source-address connection cap and rate of the client listeners, from ``[limits]``."""
    limits = config.limits
    rate = limits.conn_rate_per_addr
    return AddressLimiter(max_conns=limits.max_conns_per_addr, rate=rate,
                          burst=limits.conn_burst_per_addr if rate else 0,
                          exempt=parse_networks(limits.addr_limit_exempt))
