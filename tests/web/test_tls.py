"""HTTPS on the web node's listeners, with a certificate made at test time and httpx trusting exactly it; and a
push that travels HTTPS (admin) -> CometRPC -> a real comet -> a TLS subscriber."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from comet.config import load as load_comet_config
from comet.node import CometNode
from comet.protocol import REPLY_OK
from tests.comet.clients import TIMEOUT, sub_args, sub_command
from tests.comet.fakes import FakeMessage as FakeCometMessage
from tests.comet.tls_cert import CertFiles, make_cert
from tests.helpers import free_port
from tests.web.conftest import start_env, stop_env
from tests.web.fakes import FakeMessage
from thirdparty.confload import ConfigError
from web.cluster import ClusterView
from web.config import load
from web.node import WebNode, comet_client_factory

MSG = b'{"title":"via https"}'


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> CertFiles:
    return make_cert(tmp_path_factory.mktemp("web-tls"))


def https_client(address: str, cert: CertFiles) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"https://{address}", verify=cert.client_context(), timeout=5.0,
                             trust_env=False)


async def test_public_and_admin_listeners_serve_https(cert):
    env = await start_env(tls={"cert": cert.cert, "key": cert.key})
    public = https_client(env.config.public.bind[0], cert)
    admin = https_client(env.config.admin.bind[0], cert)
    try:
        reply = (await public.get("/1/time/get")).json()
        assert reply["ret"] == 0 and reply["data"]["timeid"] > 0
        key = env.key_on("node1")
        reply = (await admin.post("/push/private", params={"key": key, "expire": 60}, content=MSG)).json()
        assert reply["ret"] == 0 and env.comets["node1"].pushes[-1][:2] == (key, MSG)
        with pytest.raises(httpx.HTTPError):  # plain HTTP to an HTTPS listener gets no answer
            await env.public.get("/1/time/get")
        assert (await public.get("/1/time/get")).status_code == 200
    finally:
        await public.aclose()
        await admin.aclose()
        await stop_env(env)


async def test_https_on_the_public_listener_only(cert):
    env = await start_env(tls={"cert": cert.cert, "key": cert.key, "admin": False})
    public = https_client(env.config.public.bind[0], cert)
    try:
        assert (await public.get("/1/time/get")).json()["ret"] == 0
        reply = (await env.admin.post("/push/private", params={"key": "k", "expire": 0}, content=MSG)).json()
        assert reply["ret"] == 0  # the admin listener stayed plain HTTP
    finally:
        await public.aclose()
        await stop_env(env)


async def test_push_over_https_reaches_a_tls_subscriber(cert):
    comet = CometNode(load_comet_config(None, {
        "bind": {"tcp": ["127.0.0.1:0"], "ws": [], "rpc": "127.0.0.1:0", "stat": ""},
        "tls": {"cert": cert.cert, "key": cert.key}}), FakeCometMessage())
    await comet.start()
    admin_port = free_port()
    config = load(None, {
        "public": {"bind": [f"127.0.0.1:{free_port()}"]}, "admin": {"bind": [f"127.0.0.1:{admin_port}"]},
        "comets": {"node1": {"rpc": comet.addresses["rpc"], "tcp": comet.addresses["tcp"]}},
        "tls": {"cert": cert.cert, "key": cert.key}})
    view = ClusterView(config.comet_nodes(), FakeMessage(), comet_client_factory(config))
    web = WebNode(config, view)
    await web.start()
    admin = https_client(f"127.0.0.1:{admin_port}", cert)
    host, port = comet.addresses["tcp"][0].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=cert.client_context(), server_hostname=host)
    try:
        writer.write(sub_command(*sub_args("phone", 30, None, "1")))
        assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == REPLY_OK
        reply = (await admin.post("/push/private", params={"key": "phone", "expire": 60}, content=MSG)).json()
        assert reply["ret"] == 0 and reply["data"]["online"] == 1
        frame = b'{"msg":%b,"mid":%d,"gid":0}' % (MSG, reply["data"]["mid"])
        expected = b"$%d\r\n%b\r\n" % (len(frame), frame)
        assert await asyncio.wait_for(reader.readexactly(len(expected)), TIMEOUT) == expected
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        await admin.aclose()
        await web.stop()
        await view.close()
        await comet.stop()


def test_tls_config_is_checked_at_load(tmp_path, cert):
    with pytest.raises(ConfigError, match="both cert and key"):
        load(None, {"tls": {"cert": cert.cert}})
    with pytest.raises(ConfigError, match="No such file"):
        load(None, {"tls": {"cert": str(tmp_path / "nope.pem"), "key": cert.key}})
    assert load(None, {"tls": {"cert": cert.cert, "key": cert.key}}).tls.enabled
