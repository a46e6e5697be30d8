"""Broadcasts (public messages, gid 1) and acks in the browser client (web/static/pushcluster.js), in headless
Chromium on the demo page against a real in-process cluster.

The cases: a broadcast shows up once, marked public, next to acked private messages; broadcasts sent while the
page was disconnected are fetched on reconnect exactly once; the catch-up after a comet restart asks again from
10 s before the newest public mid and drops what it had; a public mid delivered late (out of order) is still handed
out, a repeated one is not; acks reach the comet (the pusher's ``wait=acked`` answers ``acked``, ``GET /msg/trace``
says ``acked``) for private messages only, never for public ones or for fetched ones the comet did not write to the
connection; ``ack: false`` sends none; JSONP fetches public messages through the legacy ``pmid``; ``lastPmid:
null`` fetches none. Frames between page and comet are watched (and, for the late mid, reordered) with
Playwright's WebSocket routing.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import BrowserCluster, ClusterFactory, needs_chromium
from tests.helpers import eventually

pytestmark = [needs_chromium, pytest.mark.asyncio(loop_scope="module")]

# Starts a Subscriber in the page (window.sub): what it hands out goes to window.got as [gid, mid, source, value],
# the mids it acked to window.acked.
START = """(o) => {
    window.got = []; window.acked = []; window.gaps = [];
    o.onMessage = (m) => got.push([m.gid, m.mid, m.source, m.value]);
    o.onAck = (m) => acked.push(m.mid);
    o.onGap = (gap) => gaps.push(gap);
    o.reconnect = {initial: 0.05, maximum: 0.2};
    window.sub = new PushCluster.Subscriber(o).start();
}"""


async def broadcast(cluster: BrowserCluster, body: Any, expire: int = 600) -> str:
    """POST /push/all; the public mid as text. A comet that is starting (ret 65535) is retried."""
    deadline = time.monotonic() + 5
    while True:
        reply = await cluster.http.post(f"{cluster.admin}/push/all", params={"expire": expire},
                                        content=json.dumps(body))
        assert reply.status_code == 200, reply.text
        envelope = reply.json()
        if envelope["ret"] == 0:
            assert envelope["data"]["fc"] == []
            return str(envelope["data"]["mid"])
        assert envelope["ret"] == 65535 and time.monotonic() < deadline, envelope
        await asyncio.sleep(0.05)


async def push(cluster: BrowserCluster, key: str, body: Any, **params: Any) -> dict[str, Any]:
    """POST /push/private with extra parameters (wait, timeout); the reply's data, mid as text."""
    reply = await cluster.http.post(f"{cluster.admin}/push/private", params={"key": key, "expire": 600, **params},
                                    content=json.dumps(body))
    envelope = reply.json()
    assert envelope["ret"] == 0, envelope
    data: dict[str, Any] = envelope["data"]
    data["mid"] = str(data["mid"])
    return data


async def open_demo(page: Any, cluster: BrowserCluster, query: str = "") -> None:
    await page.goto(f"{cluster.public}/demo/?backoff=0.05{query}")


async def connect_demo(page: Any, key: str) -> None:
    await page.fill("#key", key)
    await page.click("#connect")
    await page.wait_for_selector('#state[data-state="live"]')


async def logged(page: Any, count: int) -> list[tuple[int, str, str, Any, bool]]:
    """Wait until the demo's log holds ``count`` messages; ``(gid, mid, source, value, acked)`` of each, in order."""
    await page.wait_for_function("n => document.querySelectorAll('#log li.message').length >= n", arg=count)
    rows = await page.eval_on_selector_all(
        "#log li.message", "items => items.map(li => [Number(li.dataset.gid), li.dataset.mid, li.dataset.source,"
                           " li.querySelector('code.value').textContent, li.dataset.acked === '1'])")
    return [(gid, mid, source, json.loads(value), acked) for gid, mid, source, value, acked in rows]


async def got(page: Any, count: int) -> list[list[Any]]:
    """Wait until window.got (a subscriber started with START) holds ``count`` messages."""
    await page.wait_for_function("n => window.got.length >= n", arg=count)
    result: list[list[Any]] = await page.evaluate("window.got")
    return result


def watch_frames(frames: list[tuple[str, str]], hold_first_public: bool = False, repeat_public: bool = False) -> Any:
    """A route_web_socket handler that records every frame as (``page``/``comet``, text). With
    ``hold_first_public`` the comet's first public message reaches the page only after the next message; with
    ``repeat_public`` every public message reaches it twice."""
    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        held: list[str] = []
        holding = [hold_first_public]

        def to_page(message: str) -> None:
            frames.append(("comet", message))
            public = '"gid":1' in message
            if public and holding[0]:
                holding[0] = False
                held.append(message)
                return
            ws.send(message)
            if public and repeat_public:
                ws.send(message)
            if held and not message.startswith("+"):
                ws.send(held.pop())

        def to_comet(message: str) -> None:
            frames.append(("page", message))
            server.send(message)

        server.on_message(to_page)
        ws.on_message(to_comet)

    return route


async def test_broadcast_shows_once_as_public_and_private_messages_are_acked(
        make_cluster: ClusterFactory, page: Any, tmp_path: Path) -> None:
    cluster = await make_cluster()
    frames: list[tuple[str, str]] = []
    await page.route_web_socket("**/sub?*", watch_frames(frames))
    await open_demo(page, cluster)
    await connect_demo(page, "alice")
    public = await broadcast(cluster, {"title": "to everyone"})
    first = await push(cluster, "alice", {"title": "just for alice"}, wait="acked", timeout=5)
    assert (first["online"], first["outcome"]) == (1, "acked")   # the page acked it after showing it
    last = await push(cluster, "alice", {"n": 2}, wait="acked", timeout=5)
    assert last["outcome"] == "acked"
    rows = await logged(page, 3)
    await page.wait_for_selector(f'#log li[data-mid="{last["mid"]}"][data-acked="1"]')
    rows = await logged(page, 3)
    assert int(public) > 2 ** 53 and len(rows) == 3
    assert sorted(rows) == [(0, first["mid"], "live", {"title": "just for alice"}, True),
                            (0, last["mid"], "live", {"n": 2}, True),
                            (1, public, "live", {"title": "to everyone"}, False)]
    assert await page.text_content("#last-pmid") == public
    assert await page.eval_on_selector_all("#log li.public .gid", "items => items.map(i => i.textContent)") == [
        "public"]
    sent = [text for side, text in frames if side == "page" and text != "h"]
    assert sent == ["a" + first["mid"], "a" + last["mid"]]   # never an ack of the public mid
    assert cluster.comet.stat()["acks"] == {"received": 2, "unknown": 0}
    await page.screenshot(path=str(tmp_path / "demo-public.png"))

    async def traced_acked() -> bool:
        reply = (await cluster.http.get(f"{cluster.admin}/msg/trace",
                                        params={"key": "alice", "mid": first["mid"]})).json()
        return bool(reply["ret"] == 0 and reply["data"]["verdict"]["state"] == "acked")

    await eventually(traced_acked, timeout=5)


async def test_broadcasts_sent_while_disconnected_are_fetched_once(make_cluster: ClusterFactory, page: Any) -> None:
    """Private and public messages missed while the page was disconnected come from the catch-up, each once; the
    fetched private one is not acked (the comet never wrote it to this connection), the live ones are."""
    cluster = await make_cluster()
    await open_demo(page, cluster)
    await connect_demo(page, "bob")
    before = [await broadcast(cluster, {"p": 1}), (await push(cluster, "bob", {"n": 1}))["mid"]]
    await logged(page, 2)
    await page.wait_for_selector(f'#log li[data-mid="{before[1]}"][data-acked="1"]')
    await page.click("#disconnect")
    await page.wait_for_selector('#state[data-state="closed"]')
    missed_public = [await broadcast(cluster, {"p": 2}), await broadcast(cluster, {"p": 3})]
    missed = await push(cluster, "bob", {"n": 2})
    assert missed["online"] == 0
    await connect_demo(page, "bob")
    after = await broadcast(cluster, {"p": 4})
    final = await push(cluster, "bob", {"n": 3}, wait="acked", timeout=5)
    assert final["outcome"] == "acked"
    rows = await logged(page, 7)
    public_rows = [(mid, source, value) for gid, mid, source, value, _ in rows if gid == 1]
    private_rows = [(mid, source, value, acked) for gid, mid, source, value, acked in rows if gid == 0]
    assert public_rows == [(before[0], "live", {"p": 1}), (missed_public[0], "fetch", {"p": 2}),
                           (missed_public[1], "fetch", {"p": 3}), (after, "live", {"p": 4})]
    assert private_rows == [(before[1], "live", {"n": 1}, True), (missed["mid"], "fetch", {"n": 2}, False),
                            (final["mid"], "live", {"n": 3}, True)]
    stats = await page.evaluate("pushclusterDemo.subscriber.stats")
    assert (stats["fetched"], stats["duplicates"], stats["acks"]) == (3, 0, 1)
    assert cluster.comet.stat()["acks"] == {"received": 2, "unknown": 0}


async def test_catch_up_after_a_comet_restart_asks_public_messages_again_and_drops_seen_ones(
        make_cluster: ClusterFactory, page: Any) -> None:
    cluster = await make_cluster()
    await open_demo(page, cluster)
    await page.evaluate(START, {"key": "carl"})
    await page.wait_for_function("() => window.sub.state === 'live'")
    first = await broadcast(cluster, {"p": 1})
    await got(page, 1)

    async def seen_down() -> None:
        await page.wait_for_function("() => window.sub.state === 'backoff'")

    await cluster.restart_comet(down=seen_down)
    await page.wait_for_function("() => window.sub.state === 'live' && window.sub.stats.sessions === 2")
    second = await broadcast(cluster, {"p": 2})
    assert await got(page, 2) == [[1, first, "live", {"p": 1}], [1, second, "live", {"p": 2}]]
    stats = await page.evaluate("sub.stats")
    # the second catch-up asked from 10 s before `first`: it came again and was dropped
    assert (stats["fetched"], stats["duplicates"], stats["acks"]) == (1, 1, 0)
    assert await page.evaluate("[sub.lastPmid, sub.lastMid]") == [second, "0"]


async def test_late_public_mid_is_handed_out_and_a_repeated_one_is_not(make_cluster: ClusterFactory,
                                                                       page: Any) -> None:
    """The route holds the first broadcast back until the second has reached the page (as when two web nodes
    broadcast at once), and repeats each public frame."""
    cluster = await make_cluster()
    frames: list[tuple[str, str]] = []
    await page.route_web_socket("**/sub?*", watch_frames(frames, hold_first_public=True, repeat_public=True))
    await open_demo(page, cluster)
    await page.evaluate(START, {"key": "dana"})
    await page.wait_for_function("() => window.sub.state === 'live'")
    first = await broadcast(cluster, {"p": 1})
    second = await broadcast(cluster, {"p": 2})
    assert await got(page, 2) == [[1, second, "live", {"p": 2}], [1, first, "live", {"p": 1}]]
    final = await push(cluster, "dana", {"n": 1}, wait="acked", timeout=5)
    assert final["outcome"] == "acked"
    assert (await got(page, 3))[2] == [0, final["mid"], "live", {"n": 1}]
    stats = await page.evaluate("sub.stats")
    assert (stats["late"], stats["duplicates"], stats["acks"]) == (1, 1, 1)   # the held one was not repeated
    assert await page.evaluate("sub.lastPmid") == second


async def test_no_acks_when_turned_off(make_cluster: ClusterFactory, page: Any) -> None:
    cluster = await make_cluster()
    frames: list[tuple[str, str]] = []
    await page.route_web_socket("**/sub?*", watch_frames(frames))
    await open_demo(page, cluster)
    await page.evaluate(START, {"key": "emma", "ack": False})
    await page.wait_for_function("() => window.sub.state === 'live'")
    result = await push(cluster, "emma", {"n": 1}, wait="acked", timeout=0.3)
    assert result["outcome"] == "timeout"   # written to the page, never acked
    assert await got(page, 1) == [[0, result["mid"], "live", {"n": 1}]]
    assert [text for side, text in frames if side == "page" and text.startswith("a")] == []
    assert cluster.comet.stat()["acks"]["received"] == 0


async def test_jsonp_fetches_public_messages_with_the_legacy_pmid(make_cluster: ClusterFactory, page: Any) -> None:
    cluster = await make_cluster()
    await open_demo(page, cluster)
    stored = [await broadcast(cluster, {"p": 1}), await broadcast(cluster, ["p", 2])]
    private = await push(cluster, "finn", {"n": 1})
    await page.evaluate(START, {"key": "finn", "transport": "jsonp", "version": ""})
    fetched = await got(page, 3)
    assert sorted(fetched) == [[0, private["mid"], "fetch", {"n": 1}], [1, stored[0], "fetch", {"p": 1}],
                               [1, stored[1], "fetch", ["p", 2]]]
    await page.wait_for_function("() => window.sub.state === 'live'")
    live = await broadcast(cluster, {"p": 3})
    assert (await got(page, 4))[3] == [1, live, "live", {"p": 3}]
    assert await page.evaluate("[sub.lastPmid, sub.stats.acks]") == [live, 0]   # no version: no acks


async def test_last_pmid_null_fetches_no_public_messages(make_cluster: ClusterFactory, page: Any) -> None:
    cluster = await make_cluster()
    await open_demo(page, cluster)
    await broadcast(cluster, {"p": 1})
    private = await push(cluster, "gabe", {"n": 1})
    await page.evaluate(START, {"key": "gabe", "lastPmid": None})
    await page.wait_for_function("() => window.sub.state === 'live'")
    live = await broadcast(cluster, {"p": 2})   # live broadcasts are still handed out
    assert await got(page, 2) == [[0, private["mid"], "fetch", {"n": 1}], [1, live, "live", {"p": 2}]]
    assert await page.evaluate("[sub.stats.fetched, sub.lastPmid]") == [1, live]
