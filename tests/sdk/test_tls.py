"""Both SDKs over TLS: an HTTPS web node and comets with TLS on TCP and wss://, trusted through ``ssl_context``."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from comet.subscriber import RetriesExhausted, Subscriber
from comet.subscriber_api import Message
from comet.subscriber_logic import ReconnectPolicy
from tests.comet.tls_cert import make_cert
from tests.helpers import eventually
from tests.sdk.conftest import collect
from web.push_client import PushClient, TransportError

pytestmark = [pytest.mark.redis, pytest.mark.integration]


@pytest.mark.parametrize("proto", ["tcp", "ws"])
async def test_subscriber_and_push_client_over_tls(make_cluster: Any, tmp_path: Path, proto: str) -> None:
    cert = make_cert(tmp_path)
    cluster = await make_cluster(tls={"cert": cert.cert, "key": cert.key})
    assert cluster.public.startswith("https://")
    subscriber = cluster.subscriber("alice", proto=proto, tls=True, ssl_context=cert.client_context())
    got: list[Message] = []
    task = asyncio.create_task(collect(subscriber, got))
    await asyncio.wait_for(subscriber.wait_live(), 5)
    async with PushClient(cluster.admin, public_url=cluster.public, ssl_context=cert.client_context()) as push:
        result = await push.push_private("alice", {"secret": "hi"}, expire=60)
        assert result.online == 1
        await eventually(lambda: [m.mid for m in got] == [result.mid])
        assert (await push.fetch("alice", 0)).messages[0].value == {"secret": "hi"}
    async with PushClient(cluster.admin) as untrusting:           # the system trust store does not know it
        with pytest.raises(TransportError, match="certificate"):
            await untrusting.push_private("alice", {}, expire=0)
    await subscriber.close()
    await task


async def test_an_untrusted_certificate_is_a_failed_attempt(make_cluster: Any, tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    cluster = await make_cluster(tls={"cert": cert.cert, "key": cert.key})
    subscriber = Subscriber(cluster.public, "bob", tls=True,        # the system trust store does not know it
                            reconnect=ReconnectPolicy(initial=0.01, maximum=0.02, max_attempts=2))
    try:
        with pytest.raises(RetriesExhausted, match="2 attempts.*certificate verify failed"):
            await asyncio.wait_for(subscriber.wait_closed(), 5)
    finally:
        await subscriber.close()
