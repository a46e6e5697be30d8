"""Subscribe tokens over real sockets, on both transports: a comet with secrets admits only valid tokens.

The token goes in the fourth TCP argument or the ``token`` query parameter; a refusal is ``-a`` and a close.
"""
from __future__ import annotations

import time

import pytest

from comet import auth
from comet.protocol import REPLY_AUTH, REPLY_OK
from tests.comet.clients import TcpSub
from tests.helpers import eventually
from thirdparty.sub_token import make_token

SECRET = "comet-test-secret-0123456789"
OLD_SECRET = "comet-old-secret-0123456789"
MSG = b'{"n":1}'


def token(key: str, secret: str = SECRET, lifetime: int = 600) -> str:
    return make_token(secret.encode(), key, int(time.time()) + lifetime)


@pytest.fixture
async def secured(start_node):
    return await start_node(auth={"secrets": [SECRET, OLD_SECRET], "clock_skew": 0})


async def assert_refused(transport, node, clients, key, **kwargs):
    client, reply = await clients.open(transport, node, key, **kwargs)
    assert reply == REPLY_AUTH
    assert await client.closed_by_server() == b""


async def test_valid_token_subscribes_and_receives(transport, secured, clients):
    client, reply = await clients.open(transport, secured, "alice", token=token("alice"), version="1")
    assert reply == REPLY_OK
    result = await secured.rpc.push_private("alice", MSG, 60)
    assert result.online == 1
    assert await client.recv_frame() == transport.wire(b'{"msg":{"n":1},"mid":%d,"gid":0}' % result.mid)
    assert secured.stats.tokens == {"ok": 1}


async def test_token_of_another_key_is_refused(transport, secured, clients):
    await assert_refused(transport, secured, clients, "bob", token=token("alice"))
    assert secured.stats.refusals["-a"] == 1 and secured.stats.tokens["bad_signature"] == 1
    assert secured.table.connection_count == 0


async def test_tampered_token_is_refused(transport, secured, clients):
    version, expiry, signature = token("alice").split(".")
    await assert_refused(transport, secured, clients, "alice", token=f"{version}.{int(expiry) + 86400}.{signature}")
    await assert_refused(transport, secured, clients, "alice", token=f"{version}.{expiry}.{signature[::-1]}")
    await assert_refused(transport, secured, clients, "alice", token="not-a-token")
    assert secured.stats.tokens == {"bad_signature": 2, "malformed": 1}


async def test_expired_token_is_refused(transport, secured, clients):
    await assert_refused(transport, secured, clients, "alice", token=token("alice", lifetime=-1))
    assert secured.stats.tokens == {"expired": 1}


async def test_missing_token_is_refused(transport, secured, clients):
    await assert_refused(transport, secured, clients, "alice")                        # no token argument at all
    await assert_refused(transport, secured, clients, "alice", token="", version="1")  # an empty one
    assert secured.stats.tokens == {"missing": 2} and secured.stats.refusals["-a"] == 2


async def test_refusals_leave_other_subscribers_alone(transport, secured, clients):
    good, _ = await clients.open(transport, secured, "alice", token=token("alice"), version="1")
    await assert_refused(transport, secured, clients, "alice", token=token("alice", secret="wrong-secret-0123456789"))
    result = await secured.rpc.push_private("alice", MSG, 60)
    assert result.online == 1 and await good.recv_frame()


async def test_rotation_old_and_new_secret_both_verify(transport, secured, start_node, clients):
    for secret in (SECRET, OLD_SECRET):
        assert (await clients.open(transport, secured, "alice", token=token("alice", secret)))[1] == REPLY_OK
    retired = await start_node(auth={"secrets": [SECRET]})
    await assert_refused(transport, retired, clients, "alice", token=token("alice", OLD_SECRET))
    assert (await clients.open(transport, retired, "alice", token=token("alice")))[1] == REPLY_OK


async def test_without_secrets_any_token_is_accepted(transport, node, clients):
    for kwargs in ({}, {"token": "garbage"}, {"token": token("someone-else")}, {"token": "", "version": "1"}):
        assert (await clients.open(transport, node, "alice", **kwargs))[1] == REPLY_OK
    assert node.stats.tokens == {} and node.stats.refusals == {}


async def test_tcp_token_in_the_design_layout(secured, clients):
    """``sub key heartbeat token version`` exactly as DESIGN.md section 4 lays it out."""
    client, reply = await clients.open(TcpSub, secured, "Terry-Mao", token=token("Terry-Mao"), version="1.0")
    assert reply == REPLY_OK


async def test_rotating_the_secrets_file_needs_no_restart(transport, start_node, clients, tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "RELOAD_INTERVAL", 0.0)  # look at the file on every tick
    path = tmp_path / "secrets"
    path.write_text(f"{OLD_SECRET}\n")
    node = await start_node(auth={"secrets_file": str(path)})
    await assert_refused(transport, node, clients, "alice", token=token("alice"))
    replacement = tmp_path / "secrets.new"
    replacement.write_text(f"{SECRET}\n{OLD_SECRET}\n")
    replacement.replace(path)  # an atomic replace, as docs/protocol.md asks
    await eventually(lambda: node.auth is not None and len(node.auth.secrets) == 2)
    assert (await clients.open(transport, node, "alice", token=token("alice")))[1] == REPLY_OK
    assert (await clients.open(transport, node, "alice", token=token("alice", OLD_SECRET)))[1] == REPLY_OK
