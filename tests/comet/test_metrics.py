"""GET /metrics on the comet's stat listener: the Prometheus text format of the node's counters, scraped over HTTP."""
from __future__ import annotations

import httpx
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from comet.stat import CLOSE_CLIENT, CLOSE_OVERFLOW
from tests.comet.clients import TcpSub, WsSub
from tests.helpers import eventually

MSG = b'{"title":"hi"}'


async def scrape(node) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``GET /metrics``: (name, sorted labels without node) -> value; checks the node label."""
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(f"http://{node.addresses['stat'][0]}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("node") == "node1", sample
            samples[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_connections_follow_subscribes_and_closes(node, clients):
    before = await scrape(node)
    assert value(before, "pushcluster_comet_connections", protocol="tcp") == 0
    assert value(before, "pushcluster_comet_subscribes_total", protocol="ws") == 0
    tcp, _ = await clients.open(TcpSub, node, "m1")
    await clients.open(WsSub, node, "m2")
    after = await scrape(node)
    assert value(after, "pushcluster_comet_connections", protocol="tcp") == 1
    assert value(after, "pushcluster_comet_connections", protocol="ws") == 1
    assert value(after, "pushcluster_comet_subscribes_total", protocol="tcp") == 1
    assert value(after, "pushcluster_comet_subscribes_total", protocol="ws") == 1
    assert value(after, "pushcluster_comet_keys") == 2
    await tcp.close()

    async def tcp_closed() -> bool:
        return node.stats.connections["tcp"] == 0

    await eventually(tcp_closed)
    closed = await scrape(node)
    assert value(closed, "pushcluster_comet_connections", protocol="tcp") == 0
    assert value(closed, "pushcluster_comet_connections", protocol="ws") == 1
    assert value(closed, "pushcluster_comet_closes_total", reason=CLOSE_CLIENT) == 1
    assert value(closed, "pushcluster_comet_subscribes_total", protocol="tcp") == 1   # a counter stays


async def test_a_push_counts_one_push_and_its_deliveries(node, clients):
    await clients.open(TcpSub, node, "p1")
    await clients.open(WsSub, node, "p1")
    before = await scrape(node)
    await node.rpc.push_private("p1", MSG, 60)
    after = await scrape(node)
    assert value(after, "pushcluster_comet_pushes_total") == value(before, "pushcluster_comet_pushes_total") + 1
    assert value(after, "pushcluster_comet_deliveries_total") == value(before, "pushcluster_comet_deliveries_total") + 2
    assert value(after, "pushcluster_comet_push_failures_total") == 0
    assert value(after, "pushcluster_comet_queue_overflows_total") == 0
    assert value(after, "pushcluster_comet_closes_total", reason=CLOSE_OVERFLOW) == 0


async def test_refusals_are_counted_by_reply(node, clients):
    _, reply = await clients.open(WsSub, node, "r1", heartbeat=1)   # below min_heartbeat: -p
    assert reply.startswith(b"-p")
    samples = await scrape(node)
    assert value(samples, "pushcluster_comet_refusals_total", reply="-p") == 1
    assert value(samples, "pushcluster_comet_connections", protocol="ws") == 0
    assert value(samples, "pushcluster_comet_subscribes_total", protocol="ws") == 0


async def test_rpc_client_latency_histogram_is_exposed(node, clients):
    """The node's message client is a fake here, so the histogram shows the test's own CometClient calls (the
    histograms are process-wide): CometRPC.Ping moves by one."""
    before = await scrape(node)
    await node.rpc.ping()
    after = await scrape(node)
    name = "pushcluster_rpc_client_call_duration_seconds"
    assert value(after, f"{name}_count", method="CometRPC.Ping") == value(before, f"{name}_count",
                                                                           method="CometRPC.Ping") + 1
    assert value(after, f"{name}_bucket", method="CometRPC.Ping", le="+Inf") == value(after, f"{name}_count",
                                                                                      method="CometRPC.Ping")


async def test_stat_still_answers_next_to_metrics(node):
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(f"http://{node.addresses['stat'][0]}/stat")
        missing = await http.get(f"http://{node.addresses['stat'][0]}/metricsx")
    assert response.status_code == 200 and response.json()["node"] == "node1"
    assert missing.status_code == 404
