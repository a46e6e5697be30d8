"""The RPC transport tests run on asyncio's own event loop and on uvloop, which the roles use in production:
the two loops' transports differ in when they write, pause and close."""
from __future__ import annotations

import asyncio

import pytest_asyncio.plugin

BOTH_LOOPS = {"test_rpc.py", "test_rpc_stream.py"}

try:
    import uvloop
except ImportError:  # not installed (it is a dependency on Linux only)
    uvloop = None

if uvloop is not None and hasattr(pytest_asyncio.plugin, "PytestAsyncioSpecs"):  # the hook exists
    def pytest_asyncio_loop_factories(config, item):
        if item.path.name in BOTH_LOOPS:
            return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
        return {"asyncio": asyncio.new_event_loop}
