"""GET /metrics on a message node's optional [bind] metrics listener, over real Redis and a real MessageClient."""
from __future__ import annotations

import functools

import httpx
import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from message.config import load
from message.node import MessageNode
from thirdparty.confload import ConfigError
from thirdparty.rpc_client import RemoteError
from thirdparty.rpc_codec import ERR_INTERNAL, ERR_PARAM
from tests.helpers import free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def start_node(start_node):
    """The conftest's ``start_node`` with a metrics listener on a free port unless ``metrics=`` says otherwise."""
    return functools.partial(start_node, metrics="127.0.0.1:0")


async def scrape(node: MessageNode) -> Samples:
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(f"http://{node.metrics_address}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("node") == node.config.rpc.advertised, sample
            samples[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_saves_fetches_and_refusals_are_counted(start_node, redis_url):
    node, client = await start_node({"redis": {"r1": redis_url}})
    before = await scrape(node)
    assert value(before, "pushcluster_message_rpc_calls_total", method="SavePrivate") == 0
    await client.save_private("alice", b"m1", 60)
    await client.save_private("alice", b"m2", 60)
    await client.save_privates(["bob", "carol"], b"m3", 60)
    fetched = await client.get_private("alice", 0)
    assert len(fetched.msgs) == 2
    with pytest.raises(RemoteError) as info:
        await client.save_private("alice", b"m", -1)   # a refused argument
    assert info.value.code == ERR_PARAM
    after = await scrape(node)
    assert value(after, "pushcluster_message_rpc_calls_total", method="SavePrivate") == 3
    assert value(after, "pushcluster_message_rpc_calls_total", method="SavePrivates") == 1
    assert value(after, "pushcluster_message_saved_messages_total") == 4
    assert value(after, "pushcluster_message_fetches_total") == 1
    assert value(after, "pushcluster_message_fetched_messages_total") == 2
    assert value(after, "pushcluster_message_rpc_failures_total", method="SavePrivate", kind="param") == 1
    assert value(after, "pushcluster_message_storage_errors_total") == 0


async def test_an_unreachable_redis_is_counted_as_storage_errors(start_node, redis_url):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    node, client = await start_node({"redis": {"live": redis_url, "dead": dead}})
    keys = [f"user:{n}" for n in range(30)]
    saved = await client.save_privates(keys, b"m", 60)
    unsaved = [key for key in keys if key not in saved]
    assert saved and unsaved
    with pytest.raises(RemoteError) as info:
        await client.get_private(unsaved[0], 0)
    assert info.value.code == ERR_INTERNAL
    samples = await scrape(node)
    assert value(samples, "pushcluster_message_rpc_failures_total", method="GetPrivate", kind="storage") == 1
    assert value(samples, "pushcluster_message_storage_errors_total") == 1 + len(unsaved)
    assert value(samples, "pushcluster_message_saved_messages_total") == len(saved)


async def test_the_listener_serves_metrics_only(start_node, redis_url):
    node, _ = await start_node({"redis": {"r1": redis_url}})
    async with httpx.AsyncClient(trust_env=False) as http:
        assert (await http.get(f"http://{node.metrics_address}/stat")).status_code == 404
        assert (await http.post(f"http://{node.metrics_address}/metrics", content=b"x")).status_code == 405


async def test_metrics_are_off_by_default(start_node, redis_url):
    node, client = await start_node({"redis": {"r1": redis_url}}, metrics="")
    await client.ping()
    assert node.metrics_address == ""
    assert load(None).bind.metrics == ""


def test_a_bad_metrics_address_is_refused():
    with pytest.raises(ConfigError, match="metrics"):
        load(None, overrides={"bind": {"metrics": "nohost"}})
